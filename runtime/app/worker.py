"""The slow channels' worker: one thread that runs every slow channel (text, the detector) on a
frame of each new scene, so that capture and the fast channels never wait for them.

    worker = SlowWorker(channels, on_error=log_warning)
    worker.submit(frame, index, caption)        # replaces a frame still waiting
    worker.result_since(index)                  # (findings, ms by channel) of the newest frame
                                                # read whose index >= index, or None
"""

from __future__ import annotations

import threading
import time

import numpy as np


class SlowWorker:
    def __init__(self, channels, on_error=lambda message: None):
        """`channels`: a runtime.channels.registry.ChannelSet."""
        self.channels, self.on_error = channels, on_error
        self._cond = threading.Condition()
        self._job: tuple | None = None  # (image, index, caption, only, everything)
        self._done: tuple[int, list, dict] = (-1, [], {})
        self._stop = self._busy = False
        self._failed: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="slow-channels", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, index: int, caption=None, if_idle: bool = False,
               only=None, everything: bool = False) -> bool:
        """Run the slow channels (or `only` that one) on this frame next, replacing a frame
        still waiting; with `if_idle`, only when none is running or waiting. Whether taken."""
        with self._cond:
            if if_idle and (self._job is not None or self._busy):
                return False
            self._job = (image, index, caption, only, everything)
            self._cond.notify()
            return True

    def result_since(self, index: int) -> tuple[list, dict] | None:
        """(findings, ms each channel took) of the newest frame done with an index >= `index`."""
        with self._cond:
            i, findings, ms = self._done
            return (findings, ms) if i >= index else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                (image, index, caption, only, everything), self._job = self._job, None
                self._busy = True
            findings, ms = [], {}
            for channel in [only] if only is not None else self.channels.slow:
                t0 = time.perf_counter()
                try:
                    findings += self.channels.run_slow(image, caption, channel, everything)
                except Exception as e:  # one bad frame never ends the channel
                    if channel.name not in self._failed:
                        self._failed.add(channel.name)
                        self.on_error(f"{channel.name} channel failed on a frame "
                                      f"({type(e).__name__}: {e})")
                ms[channel.name] = round((time.perf_counter() - t0) * 1e3, 1)
            with self._cond:
                self._done = (index, findings, ms)
                self._busy = False

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)

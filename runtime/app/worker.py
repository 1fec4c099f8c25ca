"""The slow channels' worker: one thread that runs every slow channel (text, the detector) on a
frame of each new scene, so that capture and the fast channels never wait for them.

    worker = SlowWorker(channels, on_error=log_warning)
    job = worker.submit(frame, index, caption)  # a job id; it replaces a scene job still waiting
    worker.result(job)                          # Done of that job or a later scene job, or None
    key = worker.ask(channel, frame, index)     # a key's job (all of one channel), in a slot of
    worker.answer(key)                          # its own: it never stands in for a scene's
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Done:
    job: int  # the job's id (they rise, scene and key jobs alike)
    index: int  # the frame it ran on
    findings: list  # runtime.channels.base.Findings of each slow channel that did not fail
    ms: dict  # how long each channel took


class SlowWorker:
    def __init__(self, channels, on_error=lambda message: None):
        """`channels`: a runtime.channels.registry.ChannelSet."""
        self.channels, self.on_error = channels, on_error
        self._cond = threading.Condition()
        self._scene: tuple | None = None  # (job, image, index, caption) waiting
        self._key: tuple | None = None  # (job, image, index, channel) waiting
        self._done: Done | None = None  # the newest scene job done
        self._answer: Done | None = None  # the newest key job done
        self._jobs = 0
        self._stop = self._busy = False
        self._failed: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="slow-channels", daemon=True)
        self._thread.start()

    def submit(
        self, image: np.ndarray, index: int, caption=None, if_idle: bool = False
    ) -> int | None:
        """Run the slow channels on this frame next, replacing a scene job still waiting; with
        `if_idle`, only when nothing runs or waits. The job's id, or None when not taken."""
        with self._cond:
            if if_idle and (self._scene is not None or self._key is not None or self._busy):
                return None
            self._jobs += 1
            self._scene = (self._jobs, image, index, caption)
            self._cond.notify()
            return self._jobs

    def ask(self, channel, image: np.ndarray, index: int) -> int:
        """Run one channel on this frame for a key (every line of text), before any scene job."""
        with self._cond:
            self._jobs += 1
            self._key = (self._jobs, image, index, channel)
            self._cond.notify()
            return self._jobs

    def result(self, job: int) -> Done | None:
        """The newest scene job done, if it is `job` or a later one."""
        with self._cond:
            return self._done if self._done is not None and self._done.job >= job else None

    def answer(self, job: int) -> Done | None:
        with self._cond:
            return self._answer if self._answer is not None and self._answer.job == job else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._scene is None and self._key is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                key, scene = self._key, self._scene
                if key is not None:
                    (job, image, index, only), self._key, caption = key, None, None
                elif scene is not None:
                    (job, image, index, caption), self._scene, only = scene, None, None
                else:
                    continue
                self._busy = True
            findings, ms = [], {}
            for channel in [only] if only is not None else self.channels.slow:
                t0 = time.perf_counter()
                try:
                    findings += self.channels.run_slow(image, caption, channel, only is not None)
                except Exception as e:  # one bad frame never ends the channel
                    if channel.name not in self._failed:
                        self._failed.add(channel.name)
                        self.on_error(
                            f"{channel.name} channel failed on a frame ({type(e).__name__}: {e})"
                        )
                ms[channel.name] = round((time.perf_counter() - t0) * 1e3, 1)
            with self._cond:
                done = Done(job, index, findings, ms)
                if only is not None:
                    self._answer = done
                else:
                    self._done = done
                self._busy = False

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)

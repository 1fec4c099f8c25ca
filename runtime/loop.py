"""The describe loop: frames in, spoken descriptions out, under a speech policy.

    change      caption only when the scene changes: a cheap thumbnail-difference gate skips the
                encoder on static scenes; a caption is spoken once it is stable over
                `stable_frames` captioned frames, and never twice in a row (default)
    interval    caption and speak every `interval_s` seconds
    manual      Enter or space describes now, r repeats, q quits (keys from the terminal)
    continuous  caption every processed frame; the speech worker keeps only the newest

Runs until the source ends (files, folders) or q / Ctrl-C / SIGTERM; the last log line is `end`.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.captioner import Captioner
from runtime.errors import InputError
from runtime.eventlog import EventLog
from runtime.objects import Description, ObjectNamer, describe
from runtime.options import check, number
from runtime.preprocess import to_bgr8
from runtime.service import notify
from runtime.sources import Frame
from runtime.speech import SpeechWorker

MODES = ("change", "interval", "manual", "continuous")


@dataclass(frozen=True)
class LoopConfig:
    mode: str = "change"  # when to speak: change (a new scene, once it is stable), interval
    # (every --interval seconds), manual (Enter or space; r repeats, q quits) or continuous

    # a scene has changed when this share of a 32x32 gray thumbnail's pixels moved by at least
    # `change_delta` levels: a small shape is 1.5-3% of it, sensor noise moves pixels by < 5
    change_delta: int = 16  # grey levels a thumbnail pixel must move by
    change_fraction: float = 0.005  # share of the thumbnail's pixels that must move
    stable_frames: int = 2  # change mode: captioned frames that must agree before speaking
    interval_s: float = 5.0  # interval mode: seconds between descriptions
    max_frames: int = 0  # stop after this many frames (0: until the source ends)
    read_timeout_s: float = 1.0  # wait for a live frame before checking for keys and stop
    stats_s: float = 60.0  # log a stats event (frames/s, resident MB) every this many seconds
    # (0: never)
    channel: str = "caption"  # caption | objects | both (resolved; see runtime.objects)
    each_still: bool = False  # a slideshow (a folder): every frame is a new scene, said in
    # full before the next is read

    def __post_init__(self):
        check(self, "mode", self.mode in MODES, f"choose one of {', '.join(MODES)}")
        check(self, "stable_frames", number(self.stable_frames, int) and 1 <= self.stable_frames <= 100,
              "use 1..100 frames")
        check(self, "interval_s", number(self.interval_s) and 0.1 <= self.interval_s <= 86400,
              "use 0.1..86400 seconds")
        check(self, "max_frames", number(self.max_frames, int) and self.max_frames >= 0,
              "use 0 (no limit) or more frames")
        check(self, "stats_s", number(self.stats_s) and (self.stats_s == 0 or 1 <= self.stats_s <= 86400),
              "use 0 (never) or 1..86400 seconds")
        check(self, "change_delta", number(self.change_delta, int) and 1 <= self.change_delta <= 255,
              "use 1..255 grey levels")
        check(self, "change_fraction", number(self.change_fraction) and 0 < self.change_fraction <= 1,
              "use a share in (0, 1]")
        check(self, "read_timeout_s", number(self.read_timeout_s) and 0 < self.read_timeout_s <= 60,
              "use (0, 60] seconds")


def resident_mb() -> float | None:
    """This process's resident memory now (Linux /proc), in MB; None where unreadable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """8-bit BGR frame -> 32x32 gray, for the change gate."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)


class KeyReader:
    """Single keys from the terminal (raw mode when stdin is a TTY, else whole lines)."""

    def __init__(self):
        self.tty = sys.stdin.isatty()
        self.saved = None
        if self.tty:
            import termios
            import tty

            self.saved = termios.tcgetattr(sys.stdin)
            tty.setcbreak(sys.stdin.fileno())

    def poll(self) -> str | None:
        if not select.select([sys.stdin], [], [], 0)[0]:
            return None
        ch = sys.stdin.read(1)
        if ch == "":
            return "q"  # end of input
        return ch

    def close(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, self.saved)


class DescribeLoop:
    def __init__(self, captioner: Captioner, source, speech: SpeechWorker, log: EventLog,
                 cfg: LoopConfig, screen=None, stop: threading.Event | None = None,
                 preamble: list[tuple[str, dict]] = ()):
        self.cap, self.source, self.speech, self.log, self.cfg = captioner, source, speech, log, cfg
        self.screen = screen  # runtime.screen.Screen for --show, or None
        self.stop = stop if stop is not None else threading.Event()  # set: end the run
        self.preamble = list(preamble)  # (event, fields) logged right after `start`
        self.last_spoken: str | None = None
        self.last_key: tuple | None = None  # what was last spoken, as the change policy sees it
        self.namer = (ObjectNamer(captioner.bundle.object_names())
                      if cfg.channel in ("objects", "both") else None)
        self.reference: np.ndarray | None = None  # thumbnail of the last captioned frame
        self.pending: tuple[tuple, int] | None = None  # (description key, times seen) not yet stable
        self.next_interval = 0.0
        self.frames = 0
        self.captions = 0
        self.latest: Frame | None = None  # manual mode: the frame Enter describes
        self._stats_at = (time.monotonic(), 0)  # (time, frames) of the last stats event

    def _speak(self, text: str, frame: Frame | None = None, kind: str = "caption",
               interrupt: bool = False, key: tuple | None = None) -> None:
        """frame: the frame a caption describes (for its latency); None for notices."""
        if frame is None:
            self.speech.say(text, kind, -1, interrupt)
        else:
            self.speech.say(text, kind, frame.index, interrupt, frame.t_capture)
        if kind == "caption":
            self.last_spoken, self.last_key = text, key

    def _caption(self, frame) -> Description | None:
        try:
            result = self.cap.caption(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return None
        if self.screen is not None:
            self.screen.set_caption(result)
        self.captions += 1
        now = time.monotonic()
        if result.dropped:
            self.log.write("warning", frame.index, message=f"caption dropped ({result.dropped})")
        described = describe(result, self.cfg.channel, self.namer, self.cap.bundle)
        extra = {} if described.objects is None else {"objects": described.objects.top,
                                                      "description": described.text}
        if result.confidence is not None:
            extra["confidence"] = round(result.confidence, 4)
        self.log.write("caption", frame.index, caption=result.text, steps=result.steps,
                       latency_ms={"capture_to_caption": round((now - frame.t_capture) * 1e3, 2),
                                   **{k: round(v, 2) for k, v in result.timings_ms.items()}},
                       **extra)
        return described

    def _changed(self, frame) -> bool:
        thumb = thumbnail(frame.image)
        if self.reference is None or self.pending is not None:
            self.reference = thumb
            return True
        moved = float((np.abs(thumb - self.reference) >= self.cfg.change_delta).mean())
        if moved >= self.cfg.change_fraction:
            self.reference = thumb
            return True
        return False

    def on_frame(self, frame) -> None:
        mode = self.cfg.mode
        if frame.image is None:
            self.log.write("skipped", frame.index, reason=frame.error or "empty frame")
            return
        try:  # gray, BGRA, 16-bit and float frames become 8-bit BGR once, here
            frame.image = to_bgr8(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return
        if self.cfg.each_still and mode != "manual":  # a slideshow: every still is said
            d = self._caption(frame)
            if d is not None:
                self._speak(d.text, frame, key=d.key)
        elif mode == "change":
            if not self._changed(frame):
                return  # static scene: the encoder is skipped
            d = self._caption(frame)
            if d is None:
                return
            seen = self.pending[1] + 1 if self.pending and self.pending[0] == d.key else 1
            self.pending = (d.key, seen)
            if seen >= self.cfg.stable_frames:
                self.pending = None
                if d.key != self.last_key:
                    self._speak(d.text, frame, interrupt=True, key=d.key)
        elif mode == "interval":
            if time.monotonic() >= self.next_interval:
                self.next_interval = time.monotonic() + self.cfg.interval_s
                d = self._caption(frame)
                if d is not None:
                    self._speak(d.text, frame, key=d.key)
        elif mode == "continuous":
            d = self._caption(frame)
            if d is not None:
                self._speak(d.text, frame, key=d.key)

    def on_key(self, key: str, frame) -> None:
        if key in ("\n", "\r", " "):
            self.log.write("key", -1, key="describe")
            d = self._caption(frame) if frame is not None and frame.image is not None else None
            if d is None:
                self._speak("no picture yet", None, interrupt=True)
            else:
                self._speak(d.text, frame, interrupt=True, key=d.key)
        elif key == "r":
            self.log.write("key", -1, key="repeat")
            self._speak(self.last_spoken or "nothing described yet", kind="notice")
        elif key == "q":
            self.log.write("key", -1, key="quit")
            self.stop.set()

    def _stats(self, force: bool = False) -> None:
        """Health for long runs and the service journal: frames/s and resident memory."""
        now, (t, frames) = time.monotonic(), self._stats_at
        if not force and (not self.cfg.stats_s or now - t < self.cfg.stats_s):
            return
        self._stats_at = (now, self.frames)
        self.log.write("stats", self.frames, fps=round((self.frames - frames) / max(now - t, 1e-9), 1),
                       captions=self.captions, rss_mb=resident_mb())

    def run(self) -> int:
        keys = KeyReader() if self.cfg.mode == "manual" else None
        self.log.write("start", mode=self.cfg.mode, precision=self.cap.precision,
                       providers=self.cap.providers)
        for name, fields in self.preamble:
            self.log.write(name, **fields)
        self._speak("SceneSpeak ready" + (". Press enter to describe." if keys else ""), kind="notice")
        if notify("READY=1\nSTATUS=describing"):
            self.log.write("service_ready")
        try:
            while not self.stop.is_set() and self.source.streaming:
                for name, fields in _drain(self.source.events):
                    self.log.write(name, self.frames, **fields)
                    if name == "source_lost":
                        self._speak("cannot open the camera; still trying" if fields.get("starting")
                                    else "camera lost", kind="notice")
                    elif name == "source_restored":
                        self._speak("camera back", kind="notice")
                        # the wearer may have moved meanwhile: describe the scene afresh
                        self.reference = self.pending = self.last_spoken = self.last_key = None
                if self.cfg.each_still and not self.speech.wait_idle(self.cfg.read_timeout_s):
                    continue  # the next still waits until this one has been said
                frame = self.source.read(self.cfg.read_timeout_s)
                if frame is not None:
                    self.frames += 1
                    if keys is None:
                        self.on_frame(frame)
                    else:
                        self.latest = frame
                    if self.screen is not None and frame.image is not None:
                        self.screen.update(frame.image)
                if keys is not None:
                    key = keys.poll()
                    if key:
                        self.on_key(key, self.latest)
                self._stats()
                if self.cfg.max_frames and self.frames >= self.cfg.max_frames:
                    break
        finally:
            notify("STOPPING=1")
            if keys is not None:
                keys.close()
            if self.screen is not None:
                self.screen.close()
            self.source.close()
            self._stats(force=True)
            self._speak("SceneSpeak stopped", kind="notice")
            self.speech.close()
            self.log.write("end", self.frames, frames=self.frames)
            self.log.close()
        return 0


def _drain(q: queue.Queue) -> list:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out

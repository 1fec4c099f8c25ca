"""The describe loop: frames in, spoken descriptions out, under a speech policy
(runtime/app/policies.py); this module is the wiring between source, captioner, text reader,
policy, composer and voice.

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
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.app.eventlog import EventLog
from runtime.app.policies import Manual, Say, Slideshow, make_policy
from runtime.app.service import notify
from runtime.app.sources import Frame
from runtime.app.speech import SpeechWorker
from runtime.channels.compose import NOTHING, with_read
from runtime.channels.objects import Description, ObjectNamer, ObjectsConfig, describe, parts
from runtime.channels.text import TextWorker, spoken
from runtime.errors import InputError
from runtime.model.captioner import Captioner
from runtime.model.preprocess import to_bgr8
from runtime.options import check, number

MODES = ("change", "interval", "manual", "continuous")
BURST_S = 0.5  # captions further apart than this begin a new scene for the text channel


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
    channel: str = "caption"  # caption | objects | both (resolved; see runtime.channels.objects)
    each_still: bool = False  # a slideshow (a folder): every frame is a new scene, said in
    # full before the next is read
    find: str = ""  # stay quiet until this object's spoken name or word of text is seen, then
    # say where it is, again each time it moves (runtime.app.policies.Find)
    where: str = "words"  # how places are said: words ("a cat on your left") or clock ("a cat
    # at 10 o'clock")
    verbosity: str = "brief"  # brief: the most useful first, a page's first lines; full: more
    # names and every line of text
    text_wait_s: float = 1.5  # a description waits this long at most for the text read off
    # its scene

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
        check(self, "where", self.where in ("words", "clock"), "choose words or clock")
        check(self, "verbosity", self.verbosity in ("brief", "full"), "choose brief or full")
        check(self, "find", isinstance(self.find, str) and len(self.find) <= 100 and
              (not self.find or self.find.strip().replace(" ", "").replace("'", "").isalnum()),
              "use an object's name or a word, e.g. cup")


def resident_mb() -> float | None:
    """This process's resident memory now (Linux /proc), in MB; None where unreadable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)


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
                 preamble: list[tuple[str, dict]] = (), text=None):
        """`text`: a runtime.channels.text.TextReader where the text channel is on."""
        self.cap, self.source, self.speech, self.log, self.cfg = captioner, source, speech, log, cfg
        self.screen = screen  # runtime.app.screen.Screen for --show, or None
        self.stop = stop if stop is not None else threading.Event()  # set: end the run
        self.preamble = list(preamble)  # (event, fields) logged right after `start`
        self.policy = make_policy(cfg)
        self.last_spoken: str | None = None
        full = cfg.verbosity == "full"
        self.namer = (ObjectNamer(captioner.bundle.object_names(), ObjectsConfig(most=3 if full else 2,
                                                                                place_hedged=full))
                      if "objects" in parts(cfg.channel) or cfg.find else None)
        self.text = (TextWorker(text, lambda m: self.log.write("warning", message=m))
                     if text is not None and ("text" in parts(cfg.channel) or cfg.find) else None)
        # lines of text said at most (None: no text channel)
        self.max_lines = (20 if full else text.cfg.max_lines) if text is not None else None
        self.held: tuple | None = None  # (Say, frame, description, first frame of its scene, deadline)
        self.scene: tuple[float, int] = (-1e9, 0)  # (last caption's time, first frame) of a burst
        self.frames = 0
        self.captions = 0
        self.latest: Frame | None = None  # manual mode: the frame Enter describes
        self._stats_at = (time.monotonic(), 0)  # (time, frames) of the last stats event

    def _speak(self, text: str, frame: Frame | None = None, kind: str = "caption",
               interrupt: bool = False) -> None:
        """frame: the frame a caption describes (for its latency); None for notices."""
        if frame is None:
            self.speech.say(text, kind, -1, interrupt)
        else:
            self.speech.say(text, kind, frame.index, interrupt, frame.t_capture)
        if kind == "caption":
            self.last_spoken = text

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
        d = describe(result, self.cfg.channel, self.namer, self.cap.bundle,
                     locator=getattr(self.cap, "locator", None), style=self.cfg.where)
        extra = {} if d.objects is None else {"objects": d.objects.top, "description": d.text}
        if result.confidence is not None:
            extra["confidence"] = round(result.confidence, 4)
        self.log.write("caption", frame.index, caption=result.text, steps=result.steps,
                       latency_ms={"capture_to_caption": round((now - frame.t_capture) * 1e3, 2),
                                   **{k: round(v, 2) for k, v in result.timings_ms.items()}},
                       **extra)
        if self.text is not None:  # read the scene's text beside it, from the first frame of a
            # change on (captions come in bursts when a scene changes, and none when it is
            # static); every still of a slideshow and every key press is a scene of its own
            if isinstance(self.policy, (Slideshow, Manual)) or now - self.scene[0] > BURST_S:
                self.scene = (now, frame.index)
                self.text.submit(frame.image, frame.index)
            else:
                self.text.submit(frame.image, frame.index, if_idle=True)
            self.scene = (now, self.scene[1])
        return d

    def _say(self, say: Say, frame, d: Description) -> None:
        """Speak now, or, with the text channel, once the text of this scene is read."""
        if self.text is None:
            self._speak(say.text, frame, interrupt=say.interrupt)
            return
        self.held = (say, frame, d, self.scene[1], time.monotonic() + self.cfg.text_wait_s)
        self._release()

    def _release(self) -> None:
        """Say the held description with the text read off its scene, once there is some (or
        its wait is over); the Find policy looks for its word in that text."""
        if self.held is None:
            return
        say, frame, d, since, deadline = self.held
        got = self.text.result_since(since)
        if got is None and time.monotonic() < deadline:
            return
        self.held = None
        lines, ms = got if got is not None else ([], None)
        self.log.write("text", frame.index, lines=[l.as_json() for l in lines], ms=ms and round(ms, 1))
        if self.cfg.find:
            found = self.policy.decide(replace(d, lines=tuple(lines)), time.monotonic())
            if found is not None:
                self._speak(found.text, frame, interrupt=True)
            return
        read = spoken(lines, self.max_lines) if "text" in parts(self.cfg.channel) else ""
        self._speak(with_read(say.text, read) or NOTHING, frame, interrupt=say.interrupt)

    def on_frame(self, frame) -> None:
        if frame.image is None:
            self.log.write("skipped", frame.index, reason=frame.error or "empty frame")
            return
        try:  # gray, BGRA, 16-bit and float frames become 8-bit BGR once, here
            frame.image = to_bgr8(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return
        if not self.policy.wants(frame.image, time.monotonic()):
            return  # e.g. a static scene: the encoder is skipped
        d = self._caption(frame)
        if d is None:
            return
        if self.cfg.find and self.text is not None:  # Find waits for the text as well
            self._say(Say(d.text, d.key), frame, d)
            return
        say = self.policy.decide(d, time.monotonic())
        if say is not None:
            self._say(say, frame, d)

    def on_key(self, key: str, frame) -> None:
        if key in ("\n", "\r", " "):
            self.log.write("key", -1, key="describe")
            d = self._caption(frame) if frame is not None and frame.image is not None else None
            if d is None:
                self._speak("no picture yet", None, interrupt=True)
            else:
                self._say(Manual().decide(d, 0.0), frame, d)
        elif key == "t" and self.text is not None:  # all the text, at once
            self.log.write("key", -1, key="text")
            if frame is None or frame.image is None:
                self._speak("no picture yet", None, interrupt=True)
                return
            self.text.submit(frame.image, frame.index)
            deadline, got = time.monotonic() + 2 * self.cfg.text_wait_s, None
            while got is None and time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.02)
                got = self.text.result_since(frame.index)
            self._speak(spoken(got[0] if got else [], 1000) or "no text", frame, interrupt=True)
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

    def _source_events(self) -> None:
        for name, fields in _drain(self.source.events):
            self.log.write(name, self.frames, **fields)
            if name == "source_lost":
                self._speak("cannot open the camera; still trying" if fields.get("starting")
                            else "camera lost", kind="notice")
            elif name == "source_restored":
                self._speak("camera back", kind="notice")
                self.policy.reset()  # the wearer may have moved meanwhile: describe afresh
                self.scene = (-1e9, 0)

    def _step(self, keys) -> None:
        """One turn of the loop: source events, a frame, keys, the held description, stats."""
        self._source_events()
        self._release()
        if isinstance(self.policy, Slideshow) and (
                self.held is not None or not self.speech.wait_idle(self.cfg.read_timeout_s)):
            time.sleep(0.01)
            return  # the next still waits until this one has been said
        frame = self.source.read(self.cfg.read_timeout_s if self.held is None else 0.02)
        if frame is None and self.held is not None:
            time.sleep(0.01)  # a file that has ended: wait for the text of its last scene
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
        self._release()
        self._stats()

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
            while not self.stop.is_set() and (self.source.streaming or self.held is not None):
                self._step(keys)
                if self.cfg.max_frames and self.frames >= self.cfg.max_frames and self.held is None:
                    break
        finally:
            notify("STOPPING=1")
            if keys is not None:
                keys.close()
            if self.screen is not None:
                self.screen.close()
            self.source.close()
            if self.text is not None:
                self.text.close()
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

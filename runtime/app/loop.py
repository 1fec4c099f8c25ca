"""The describe loop: frames in, spoken descriptions out, under a speech policy
(runtime/app/policies.py); this module is the wiring between source, channels (fast ones here,
slow ones in runtime/app/worker.py), policy, composer and voice. It names no channel.

    change      caption only when the scene changes: a cheap thumbnail-difference gate skips the
                encoder on static scenes; a caption is spoken once it is stable over
                `stable_frames` captioned frames, and never twice in a row (default)
    interval    caption and speak every `interval_s` seconds
    manual      Enter or space describes now, r repeats, q quits (keys from the terminal)
    continuous  caption every processed frame; the speech worker keeps only the newest

Runs until the source ends (files, folders) or q / Ctrl-C / SIGTERM; the last log line is `end`.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.app.eventlog import EventLog, Stats
from runtime.app.keys import KeyReader, stdin_fd
from runtime.app.policies import Say, make_policy
from runtime.app.service import notify
from runtime.app.slow import NoSlowChannels, SlowScenes
from runtime.app.sources import Frame
from runtime.channels.compose import Description
from runtime.errors import InputError
from runtime.model.preprocess import to_bgr8
from runtime.options import check, number

__all__ = ["MODES", "DescribeLoop", "LoopConfig", "stdin_fd"]

MODES = ("change", "interval", "manual", "continuous")
BURST_S = 0.5  # captions further apart than this begin a new scene for the slow channels
KEYS = {"\n": "describe", "\r": "describe", " ": "describe", "r": "repeat", "q": "quit"}


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
    each_still: bool = False  # a slideshow (a folder): every frame is a new scene, said in
    # full before the next is read
    stills: bool = False  # the frames are stills (a folder, --fast too): each is a scene of
    # its own for the slow channels
    find: str = ""  # stay quiet until this object's spoken name or word of text is seen, then
    # say where it is, again each time it moves (runtime.app.policies.Find)
    slow_wait_s: float = 1.5  # a description waits this long at most for the slow channels
    # (text, the detector) to report on its scene; what they find later is said when it comes
    recheck_s: float = 2.0  # on a still scene, the slow channels look again this often (when
    # idle), so a new sign on an unchanged wall is read (0: never)

    def __post_init__(self):
        check(self, "mode", self.mode in MODES, f"choose one of {', '.join(MODES)}")
        check(
            self,
            "stable_frames",
            number(self.stable_frames, int) and 1 <= self.stable_frames <= 100,
            "use 1..100 frames",
        )
        check(
            self,
            "interval_s",
            number(self.interval_s) and 0.1 <= self.interval_s <= 86400,
            "use 0.1..86400 seconds",
        )
        check(
            self,
            "max_frames",
            number(self.max_frames, int) and self.max_frames >= 0,
            "use 0 (no limit) or more frames",
        )
        check(
            self,
            "stats_s",
            number(self.stats_s) and (self.stats_s == 0 or 1 <= self.stats_s <= 86400),
            "use 0 (never) or 1..86400 seconds",
        )
        check(
            self,
            "change_delta",
            number(self.change_delta, int) and 1 <= self.change_delta <= 255,
            "use 1..255 grey levels",
        )
        check(
            self,
            "change_fraction",
            number(self.change_fraction) and 0 < self.change_fraction <= 1,
            "use a share in (0, 1]",
        )
        check(
            self,
            "recheck_s",
            number(self.recheck_s) and (self.recheck_s == 0 or 0.5 <= self.recheck_s <= 3600),
            "use 0 (never) or 0.5..3600 seconds",
        )
        check(
            self,
            "read_timeout_s",
            number(self.read_timeout_s) and 0 < self.read_timeout_s <= 60,
            "use (0, 60] seconds",
        )
        check(
            self,
            "find",
            isinstance(self.find, str)
            and len(self.find) <= 100
            and (not self.find or _findable(self.find)),
            "use an object's name or a word, e.g. cup",
        )


def _findable(name: str) -> bool:
    """A thing's name or a word: letters and digits, with the spaces and marks real names have
    ("T-shirt", "Band-Aid", "potter's wheel", "handrail / baluster", "No. 2")."""
    marks = set(" '-/,.&")
    return any(c.isalnum() for c in name) and all(c.isalnum() or c in marks for c in name.strip())


class DescribeLoop:
    """Frames from a source, through the policy and the channels, to the voice and the log.
    Each turn: the source's events, a frame (described if the policy wants it), a key, the
    slow channels' held and late findings (runtime/app/slow.py), stats. The policy says what
    it needs: `keys`, `waits_for_speech`, `scenes_each`, `complete` (runtime/app/policies.py)."""

    def __init__(
        self, channels, source, speech, log: EventLog, cfg: LoopConfig, screen=None, stop=None,
        preamble=(),
    ):  # fmt: skip
        """`channels`: a ChannelSet (runtime.app.assemble); `speech`: a SpeechWorker; `stop`: a
        threading.Event, set to end the run; `preamble`: (event, fields) logged after `start`."""
        self.channels, self.cap = channels, channels.captioner
        self.source, self.speech, self.log, self.cfg = source, speech, log, cfg
        self.screen = screen  # runtime.app.screen.Screen for --show, or None
        self.stop = stop if stop is not None else threading.Event()
        self.preamble = list(preamble)
        self.policy = make_policy(cfg, channels.setup.where)
        channels.on_error = lambda m: self.log.write("warning", message=m)
        slow = SlowScenes(channels, self.policy, log, self._speak, self._decide, cfg, self.stop)
        self.slow = slow if channels.slow else NoSlowChannels(self._speak, channels)
        self.stats = Stats(log, cfg.stats_s)
        self.last_spoken: str | None = None
        self.last_caption = -1e9  # when the last frame was described: a gap begins a scene
        self.frames = self.captions = 0
        self.latest: Frame | None = None  # with keys: the frame Enter describes
        self.undecided: tuple | None = None  # (frame, fast findings, Description) the policy
        # held back, for its flush() when the file ends

    def _speak(self, text: str, frame=None, interrupt=False, kind="caption", index=-1) -> None:
        """frame: the Frame a caption describes (for its latency), else its index or -1."""
        at = (frame.index, frame.t_capture) if frame else (index, None)
        self.speech.say(text, kind, at[0], interrupt, at[1])
        self.last_spoken = text if kind == "caption" else self.last_spoken

    def _decide(self, frame: Frame, fast: list, d: Description) -> Say | None:
        """The policy's decision on a description; what it holds back is kept for flush()."""
        say = self.policy.decide(d, time.monotonic())
        self.undecided = None if say is not None else (frame, fast, d)
        return say

    def _describe(self, frame: Frame) -> tuple[list, Description] | None:
        """(fast findings, their description) of a frame, logged; the slow channels start on
        it where it begins a scene (a still, a key press, a frame after a gap in captions)."""
        try:
            result, fast = self.channels.run_fast(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return None
        if self.screen is not None:
            self.screen.set_caption(result)
        self.captions += 1
        now, d = time.monotonic(), self.channels.compose(fast)
        log_caption(self.log, frame, result, d, now)
        new = self.policy.scenes_each or self.cfg.stills or now - self.last_caption > BURST_S
        self.slow.look(frame, result, new)
        self.last_caption = now
        return fast, d

    def on_frame(self, frame: Frame) -> None:
        try:  # gray, BGRA, 16-bit and float frames become 8-bit BGR once, here
            if frame.image is None:
                raise InputError(frame.error or "empty frame")
            frame.image = to_bgr8(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return
        if not self.policy.wants(frame.image, time.monotonic()):
            self.slow.recheck(frame)  # e.g. a static scene: the encoder is skipped
            return
        got = self._describe(frame)
        if got is not None and self.slow.active and (self.policy.complete or got[1].key == ()):
            self.slow.decide_after(frame, *got)  # it decides on everything (or only slow
        elif got is not None and (say := self._decide(frame, *got)):  # channels speak: the
            self.slow.say_after(say, frame, *got)  # fast findings cannot tell scenes apart)

    def on_key(self, key: str, frame: Frame | None) -> None:
        """Enter or space describes, r repeats, q quits; a channel's key asks it alone."""
        channel, action = self.channels.keys.get(key), KEYS.get(key)
        if channel is None and action is None:
            return
        self.log.write("key", -1, key=channel.name if channel else action)
        if action == "repeat":
            self._speak(self.last_spoken or "nothing described yet", kind="repeat")
        elif action == "quit":
            self.stop.set()
        elif frame is None or frame.image is None:
            self._speak("no picture yet", None, True)
        elif channel is not None:
            found = self.slow.ask(channel, frame)
            said = self.channels.compose(found).text if found else f"no {channel.name}"
            self._speak(said, frame, True)
        elif (got := self._describe(frame)) is not None:
            self.slow.say_after(self.policy.asked(got[1]), frame, *got)

    def _source_events(self) -> None:
        for name, fields in _drain(self.source.events):
            self.log.write(name, self.frames, **fields)
            if name == "source_lost":
                lost = "cannot open the camera; still trying" if fields.get("starting") else ""
                self._speak(lost or "camera lost", kind="notice")
            elif name == "source_restored":
                self._speak("camera back", kind="notice")
                self.policy.reset()  # the wearer may have moved meanwhile: describe afresh
                self.last_caption = -1e9
                self.slow.forget()

    @property
    def _full(self) -> bool:
        """max_frames frames have been read: from now on the loop only drains."""
        return 0 < self.cfg.max_frames <= self.frames

    def _step(self, keys: KeyReader | None) -> None:
        """One turn of the loop: source events, a frame, keys, the held description, stats."""
        self._source_events()
        self.slow.release()
        held, timeout = self.slow.held is not None, self.cfg.read_timeout_s
        if self.policy.waits_for_speech and (held or not self.speech.wait_idle(timeout)):
            time.sleep(0.01)
            return  # the next still waits until this one has been said
        frame = None if self._full else self.source.read(0.02 if held else timeout)
        if frame is None and held:
            time.sleep(0.01)  # a file that has ended: wait for the slow channels on its last scene
        elif frame is not None:
            self.frames += 1
            self.latest = frame
            if keys is None:
                self.on_frame(frame)
            if self.screen is not None and frame.image is not None:
                self.screen.update(frame.image)
        if keys is not None and (key := keys.poll()):
            self.on_key(key, self.latest)
        self.slow.release()
        self.slow.late()
        self.stats.tick(self.frames, self.captions)

    def run(self) -> int:
        keys = KeyReader() if self.policy.keys else None
        with _running(self, keys):
            while not self.stop.is_set() and (self.source.streaming or self.slow.held):
                self._step(keys)
                if self.slow.held is None and self._full:
                    break
            if self.undecided is not None and not self.stop.is_set() and not self.source.live:
                frame, fast, d = self.undecided  # the file ended on a scene not yet said
                if say := self.policy.flush(d):
                    self.slow.say_after(say, frame, fast, d)
            self.slow.drain()
        return 0


@contextmanager
def _running(loop: DescribeLoop, keys: KeyReader | None):
    """A run's bracket: its `start` line, preamble and "ready"; then, however it ends, every
    part closed, the last stats, "stopped", and its `end` line."""
    loop.log.write(
        "start", mode=loop.cfg.mode, precision=loop.cap.precision, providers=loop.cap.providers
    )
    for name, fields in loop.preamble:
        loop.log.write(name, **fields)
    loop._speak("SceneSpeak ready" + (". Press enter to describe." if keys else ""), kind="notice")
    if notify("READY=1\nSTATUS=describing"):
        loop.log.write("service_ready")
    try:
        yield
    finally:
        notify("STOPPING=1")
        for part in (keys, loop.screen, loop.source, loop.slow):
            if part is not None:
                part.close()
        loop.stats.tick(loop.frames, loop.captions, force=True)
        loop._speak("SceneSpeak stopped", kind="notice")
        loop.speech.close()
        loop.log.write("end", loop.frames, frames=loop.frames)
        loop.log.close()


def log_caption(log: EventLog, frame: Frame, result, d: Description, now: float) -> None:
    """A described frame's caption event: the caption, its timings and every channel's keys."""
    if result.dropped:
        log.write("warning", frame.index, message=f"caption dropped ({result.dropped})")
    extra = {**d.report(), "description": d.text}
    if result.confidence is not None:
        extra["confidence"] = round(result.confidence, 4)
    log.write(
        "caption",
        frame.index,
        caption=result.text,
        steps=result.steps,
        latency_ms={
            "capture_to_caption": round((now - frame.t_capture) * 1e3, 2),
            **{k: round(v, 2) for k, v in result.timings_ms.items()},
        },
        **extra,
    )


def _drain(q: queue.Queue) -> list:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out

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

import os
import queue
import select
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.app.eventlog import EventLog
from runtime.app.policies import Manual, Say, make_policy
from runtime.app.service import notify
from runtime.app.sources import Frame
from runtime.app.speech import SpeechWorker
from runtime.app.worker import SlowWorker
from runtime.channels.base import Setup
from runtime.channels.compose import Description
from runtime.channels.registry import ChannelSet, resolve
from runtime.errors import InputError
from runtime.model.preprocess import to_bgr8
from runtime.options import check, number

MODES = ("change", "interval", "manual", "continuous")
BURST_S = 0.5  # captions further apart than this begin a new scene for the slow channels


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
    channel: str = "caption"  # the channels, a comma list (runtime.channels.registry.resolve)
    each_still: bool = False  # a slideshow (a folder): every frame is a new scene, said in
    # full before the next is read
    stills: bool = False  # the frames are stills (a folder, --fast too): each is a scene of
    # its own for the slow channels
    find: str = ""  # stay quiet until this object's spoken name or word of text is seen, then
    # say where it is, again each time it moves (runtime.app.policies.Find)
    where: str = "words"  # how places are said: words ("a cat on your left") or clock ("a cat
    # at 10 o'clock")
    verbosity: str = "brief"  # brief: the most useful first, a page's first lines; full: more
    # names and every line of text
    slow_wait_s: float = 1.5  # a description waits this long at most for the slow channels
    # (text, the detector) to report on its scene; what they find later is said when it comes
    recheck_s: float = 2.0  # on a still scene, the slow channels look again this often (when
    # idle), so a new sign on an unchanged wall is read (0: never)

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
        check(self, "recheck_s", number(self.recheck_s) and (self.recheck_s == 0 or 0.5 <= self.recheck_s <= 3600),
              "use 0 (never) or 0.5..3600 seconds")
        check(self, "read_timeout_s", number(self.read_timeout_s) and 0 < self.read_timeout_s <= 60,
              "use (0, 60] seconds")
        check(self, "where", self.where in ("words", "clock"), "choose words or clock")
        check(self, "verbosity", self.verbosity in ("brief", "full"), "choose brief or full")
        check(self, "find", isinstance(self.find, str) and len(self.find) <= 100 and
              (not self.find or _findable(self.find)), "use an object's name or a word, e.g. cup")


def _reads(findings) -> tuple:
    """What the slow channels read (text, codes): new reading is a change of its own."""
    return tuple((f.channel, f.read) for f in findings if f.read)


def _findable(name: str) -> bool:
    """A thing's name or a word: letters and digits, with the spaces and marks real names have
    ("T-shirt", "Band-Aid", "potter's wheel", "handrail / baluster", "No. 2")."""
    marks = set(" '-/,.&")
    return any(c.isalnum() for c in name) and all(c.isalnum() or c in marks for c in name.strip())


def resident_mb() -> float | None:
    """This process's resident memory now (Linux /proc), in MB; None where unreadable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)


def stdin_fd() -> int | None:
    """Standard input's descriptor, or None where it is closed (`<&-`)."""
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else None
        if fd is not None:
            os.fstat(fd)
        return fd
    except (OSError, ValueError, AttributeError):
        return None


class KeyReader:
    """Single keys from the terminal (cbreak mode when stdin is a TTY), read straight from its
    descriptor: keys that arrive together ("r" typed with Enter) are each handled at once, not
    left in a buffer that select() cannot see. The end of input is "q"."""

    def __init__(self):
        self.fd = stdin_fd()
        if self.fd is None:
            raise InputError("--mode manual: standard input is closed; keys come from the terminal")
        self.tty = os.isatty(self.fd)
        self.saved = None
        self.keys: list[str] = []
        if self.tty:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def poll(self) -> str | None:
        if not self.keys:
            try:
                if not select.select([self.fd], [], [], 0)[0]:
                    return None
                data = os.read(self.fd, 1024)
            except OSError:
                data = b""
            keys = list(data.decode("utf-8", "replace")) if data else ["q"]
            # r pressed many times at once is one repeat (not a queue of them)
            self.keys = [k for i, k in enumerate(keys) if not (k == "r" and keys[i - 1:i] == ["r"])]
        return self.keys.pop(0)

    def close(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


@dataclass
class Pending:
    """A description waiting for the slow channels' findings on its scene."""
    say: Say | None  # what the policy decided on the fast findings (None: it decides on all)
    frame: Frame
    fast: list  # the fast channels' findings
    job: int  # the slow channels' job it waits for (that one or a later one will do)
    deadline: float  # monotonic time after which it is said without them


class DescribeLoop:
    def __init__(self, channels, source, speech: SpeechWorker, log: EventLog, cfg: LoopConfig,
                 screen=None, stop: threading.Event | None = None,
                 preamble: list[tuple[str, dict]] = ()):
        """`channels`: a runtime.channels.registry.ChannelSet, or a Captioner, whose channels
        are then cfg.channel's."""
        if not isinstance(channels, ChannelSet):
            setup = Setup(channels.bundle, channels.precision, where=cfg.where,
                          verbosity=cfg.verbosity, has_objects=channels.has_objects)
            channels = ChannelSet(channels, resolve(cfg.channel, setup), setup)
        self.channels, self.cap = channels, channels.captioner
        self.source, self.speech, self.log, self.cfg = source, speech, log, cfg
        self.screen = screen  # runtime.app.screen.Screen for --show, or None
        self.stop = stop if stop is not None else threading.Event()  # set: end the run
        self.preamble = list(preamble)  # (event, fields) logged right after `start`
        self.policy = make_policy(cfg)
        self.last_spoken: str | None = None
        warn = lambda m: self.log.write("warning", message=m)  # noqa: E731
        channels.on_error = warn
        self.worker = SlowWorker(channels, warn) if channels.slow else None
        self.held: Pending | None = None
        self.last_caption = -1e9  # when the last frame was described: a gap begins a scene
        self.job = 0  # the newest slow channels' job submitted
        self.logged = 0  # the newest slow channels' job logged
        self.fast: list = []  # the fast findings of the last scene said
        self.read_said: tuple = ()  # what the slow channels read in what was said last
        self.new_read: tuple = ((), 0)  # (what a later look read, how many looks in a row)
        self.overdue = 0  # the slow job a description was said without (too slow), or 0
        self.looked = time.monotonic()  # when the slow channels last looked (see _recheck)
        self.looks: dict = {}  # frame index -> Frame of a look whose findings may come late
        self.frames = 0
        self.captions = 0
        self.latest: Frame | None = None  # manual mode: the frame Enter describes
        self.undecided: tuple | None = None  # (frame, fast findings, Description) the policy
        # held back, for its flush() when the file ends
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

    def _describe(self, frame) -> tuple[object, list, Description] | None:
        """The fast channels on a frame (logged as its caption event), and the slow ones
        started on it where it begins a scene: (caption, fast findings, their description)."""
        try:
            result, fast = self.channels.run_fast(frame.image)
        except InputError as e:
            self.log.write("skipped", frame.index, reason=str(e))
            return None
        if self.screen is not None:
            self.screen.set_caption(result)
        self.captions += 1
        now = time.monotonic()
        if result.dropped:
            self.log.write("warning", frame.index, message=f"caption dropped ({result.dropped})")
        d = self.channels.compose(fast)
        extra = {**d.report(), "description": d.text}
        if result.confidence is not None:
            extra["confidence"] = round(result.confidence, 4)
        self.log.write("caption", frame.index, caption=result.text, steps=result.steps,
                       latency_ms={"capture_to_caption": round((now - frame.t_capture) * 1e3, 2),
                                   **{k: round(v, 2) for k, v in result.timings_ms.items()}},
                       **extra)
        if self.worker is not None:  # the slow channels look at the scene from the first frame
            # of a change on (captions come in bursts when a scene changes, and none when it is
            # static), then at a later frame of it whenever they are idle; every still and
            # every key press is a scene of its own
            new = self.policy.scenes_each or self.cfg.stills or now - self.last_caption > BURST_S
            job = self.worker.submit(frame.image, frame.index, result, if_idle=not new)
            self.job = job or self.job
            self.looked = now
        self.last_caption = now
        return result, fast, d

    def _say(self, say: Say | None, frame, fast: list, d: Description) -> None:
        """Speak now, or, with slow channels, once they have reported on this scene."""
        if self.worker is None:
            if say is not None:
                self._speak(say.text, frame, interrupt=say.interrupt)
            return
        if say is None and self.held is not None and self.held.say is None and \
                not self.policy.scenes_each:
            # a description that decides on the slow findings is already waiting for them:
            # it keeps its place (replaced by each newer frame, it would wait for ever when
            # they take longer than a frame, and nothing would be said)
            self._release()
            return
        self.held = Pending(say, frame, fast, self.job, time.monotonic() + self.cfg.slow_wait_s)
        self._release()

    def _release(self) -> None:
        """Say the held description with the slow channels' findings on its scene, once there
        are some (or its wait is over); a policy that decides on everything decides now."""
        held = self.held
        if held is None:
            return
        done = self.worker.result(held.job)
        if done is None and time.monotonic() < held.deadline:
            return
        self.held = None
        if done is not None:
            self._log_job(done)
            if self.overdue and done.job >= self.overdue:
                self.overdue = 0  # a newer scene's findings came first: they stand for it
        else:
            self.overdue, self.looks = held.job, {held.frame.index: held.frame}
            self.log.write("warning", held.frame.index, message="the slow channels took longer "
                           f"than {self.cfg.slow_wait_s} s; said without them, and what they find "
                           "is said when it comes")
        d = self.channels.compose(held.fast + (done.findings if done else []))
        self.fast = held.fast
        say = held.say or self.policy.decide(d, time.monotonic())
        if held.say is None:  # the policy decided here: what it held back, for flush()
            self.undecided = None if say is not None else (held.frame, held.fast, d)
        if say is not None:
            self._speak(say.text if held.say is None else d.text, held.frame, interrupt=say.interrupt)
            self.read_said = _reads(done.findings) if done else self.read_said
            self.new_read = ((), 0)  # a later look's count starts afresh

    def _log_job(self, done) -> None:
        """Each slow job's findings, logged once (with how long each channel took)."""
        if done.job > self.logged:
            self.logged = done.job
            for f in done.findings:
                self.log.write(f.channel, done.index, ms=done.ms.get(f.channel), **f.report)

    def _late(self) -> None:
        """Slow findings that came after their scene was said (text slower than slow_wait_s)
        or from a look at a still scene (recheck_s): logged, and said where they read
        something new (a new sign on the same wall), with the scene's fast findings."""
        if self.worker is None or self.held is not None:
            return
        done = self.worker.result(self.logged + 1)
        if done is None:
            return
        self._log_job(done)
        reads = _reads(done.findings)
        late = self.overdue and done.job >= self.overdue  # the scene said without them
        if late:
            self.overdue = 0
        seen = self.new_read[1] + 1 if self.new_read[0] == reads else 1
        self.new_read = (reads, seen)
        if self.policy.complete or not reads or reads == self.read_said or self.stop.is_set():
            return
        if late or seen >= 2:  # a look at a still scene: read the same twice (no OCR flicker)
            self.read_said = reads
            d = self.channels.compose(self.fast + done.findings)
            frame = self.looks.get(done.index)  # for its capture-to-speech latency
            if frame is not None:
                self._speak(d.text, frame, interrupt=True)
            else:
                self.speech.say(d.text, "caption", done.index, True)
                self.last_spoken = d.text

    def _recheck(self, frame) -> None:
        """A frame the policy passed over (a still scene): the slow channels look at it now
        and then when idle, so text that appears without the scene changing is read."""
        now = time.monotonic()
        if self.worker is None or not self.cfg.recheck_s or self.policy.scenes_each or \
                now - self.looked < self.cfg.recheck_s or self.held is not None:
            return
        self.looked = now
        job = self.worker.submit(frame.image, frame.index, None, if_idle=True)
        self.job = job or self.job
        if job:
            self.looks = {frame.index: frame}

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
            self._recheck(frame)  # e.g. a static scene: the encoder is skipped
            return
        got = self._describe(frame)
        if got is None:
            return
        _, fast, d = got
        if self.worker is not None and (self.policy.complete or d.key == ()):
            self._say(None, frame, fast, d)  # it decides on everything (or only slow channels
            return  # speak: the fast findings alone cannot tell one scene from another)
        say = self.policy.decide(d, time.monotonic())
        self.undecided = None if say is not None else (frame, fast, d)
        if say is not None:
            self._say(say, frame, fast, d)

    def on_key(self, key: str, frame) -> None:
        if key in ("\n", "\r", " "):
            self.log.write("key", -1, key="describe")
            got = self._describe(frame) if frame is not None and frame.image is not None else None
            if got is None:
                self._speak("no picture yet", None, interrupt=True)
            else:
                self._say(Manual().decide(got[2], 0.0), frame, got[1], got[2])
        elif key in self.channels.keys:  # one channel, all of it, at once ("t": all the text)
            channel = self.channels.keys[key]
            self.log.write("key", -1, key=channel.name)
            if frame is None or frame.image is None:
                self._speak("no picture yet", None, interrupt=True)
                return
            found = self._ask(channel, frame)
            said = self.channels.compose(found).text if found else f"no {channel.name}"
            self._speak(said, frame, interrupt=True)
        elif key == "r":
            self.log.write("key", -1, key="repeat")
            self._speak(self.last_spoken or "nothing described yet", kind="repeat")
        elif key == "q":
            self.log.write("key", -1, key="quit")
            self.stop.set()

    def _ask(self, channel, frame) -> list | None:
        """One channel's findings on the frame at hand, all of it: a slow one in the worker
        (waited for), a fast one here; None when it failed or took too long."""
        if not channel.slow:
            try:
                return self.channels.run_slow(frame.image, self.cap.caption(frame.image), channel,
                                              everything=True)
            except Exception as e:
                self.log.write("warning", frame.index, message=f"{channel.name} channel failed "
                               f"({type(e).__name__}: {e})")
                return None
        job = self.worker.ask(channel, frame.image, frame.index)
        deadline, done = time.monotonic() + 2 * self.cfg.slow_wait_s, None
        while done is None and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.02)
            done = self.worker.answer(job)
        return done.findings if done is not None else None

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
                self.last_caption = -1e9
                self.read_said, self.new_read = (), ((), 0)

    def _step(self, keys) -> None:
        """One turn of the loop: source events, a frame, keys, the held description, stats."""
        self._source_events()
        self._release()
        if self.policy.waits_for_speech and (
                self.held is not None or not self.speech.wait_idle(self.cfg.read_timeout_s)):
            time.sleep(0.01)
            return  # the next still waits until this one has been said
        limit = self.cfg.max_frames and self.frames >= self.cfg.max_frames  # then only drain
        frame = None if limit else self.source.read(self.cfg.read_timeout_s if self.held is None
                                                    else 0.02)
        if frame is None and self.held is not None:
            time.sleep(0.01)  # a file that has ended: wait for the slow channels on its last scene
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
        self._late()
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
            if self.undecided is not None and not self.stop.is_set() and not self.source.live:
                frame, fast, d = self.undecided  # the file ended on a scene not yet said
                say = self.policy.flush(d)
                if say is not None:
                    self._say(say, frame, fast, d)
            while self.held is not None:  # q just after Enter: the description is still said
                self._release()  # (its slow channels' wait is bounded by slow_wait_s)
                time.sleep(0.01)
            late = time.monotonic() + max(5.0, 4 * self.cfg.slow_wait_s)
            while self.overdue and time.monotonic() < late and not self.stop.is_set():
                self._late()  # the last scene's slow findings, said when they come
                time.sleep(0.02)
        finally:
            notify("STOPPING=1")
            if keys is not None:
                keys.close()
            if self.screen is not None:
                self.screen.close()
            self.source.close()
            if self.worker is not None:
                self.worker.close()
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

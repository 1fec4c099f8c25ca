"""The slow channels' side of the describe loop (runtime/app/loop.py): a description held until
the slow channels (text, the detector, codes) report on its scene, what they find after it was
said, and a look now and then at a still scene, so that a new sign on an unchanged wall is read.

    slow = SlowScenes(channels, policy, log, speak, decide, cfg, stop)
    slow.look(frame, caption, new_scene=True)   # the slow channels start on this frame
    slow.say_after(say, frame, fast, d)         # said once they have reported (or it waited
    slow.decide_after(frame, fast, d)           # slow_wait_s), or the policy decides then
    slow.release()                              # call every turn of the loop
    slow.late(); slow.recheck(frame)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from runtime.app.policies import Say
from runtime.app.sources import Frame
from runtime.app.worker import SlowWorker


@dataclass
class Pending:
    """A description waiting for the slow channels' findings on its scene."""

    say: Say | None  # what the policy decided on the fast findings (None: it decides on all)
    frame: Frame
    fast: list  # the fast channels' findings
    job: int  # the slow channels' job it waits for (that one or a later one will do)
    deadline: float  # monotonic time after which it is said without them


def _reads(findings) -> tuple:
    """What the slow channels read (text, codes): new reading is a change of its own."""
    return tuple((f.channel, f.read) for f in findings if f.read)


class SlowScenes:
    active = True  # there are slow channels to wait for

    def __init__(self, channels, policy, log, speak, decide, cfg, stop):
        """`speak(text, frame, interrupt, index=)` says a description of `frame` (or of the
        frame `index`, one no longer at hand); `decide(frame, fast, d)` is the policy's Say or None
        for a whole description; `cfg` is the loop's LoopConfig."""
        self.channels, self.policy, self.log, self.speak = channels, policy, log, speak
        self.decide = decide
        self.cfg, self.stop = cfg, stop
        self.worker = SlowWorker(channels, lambda m: log.write("warning", message=m))
        self.held: Pending | None = None
        self.job = 0  # the newest job submitted
        self.logged = 0  # the newest job logged
        self.fast: list = []  # the fast findings of the last scene said
        self.read_said: tuple = ()  # what the slow channels read in what was said last
        self.new_read: tuple = ((), 0)  # (what a later look read, how many looks in a row)
        self.overdue = 0  # the job a description was said without (too slow), or 0
        self.looked = time.monotonic()  # when the slow channels last looked (see recheck)
        self.looks: dict = {}  # frame index -> Frame of a look whose findings may come late

    def look(self, frame: Frame, caption, new_scene: bool) -> None:
        """The slow channels look at a described frame: from the first frame of a change on
        (captions come in bursts when a scene changes, and none when it is static), then at a
        later frame of it whenever they are idle."""
        if frame.image is None:
            return
        job = self.worker.submit(frame.image, frame.index, caption, if_idle=not new_scene)
        self.job = job or self.job
        self.looked = time.monotonic()

    def say_after(self, say: Say, frame: Frame, fast: list, d) -> None:
        """Say `say` once the slow channels have reported on this scene."""
        self._hold(say, frame, fast, d)

    def decide_after(self, frame: Frame, fast: list, d) -> None:
        """What the policy decides on the whole description, once the slow channels have
        reported on this scene, is said."""
        self._hold(None, frame, fast, d)

    def _hold(self, say: Say | None, frame: Frame, fast: list, d) -> None:
        if (
            say is None
            and self.held is not None
            and self.held.say is None
            and not self.policy.scenes_each
        ):
            # a description that decides on the slow findings is already waiting for them:
            # it keeps its place (replaced by each newer frame, it would wait for ever when
            # they take longer than a frame, and nothing would be said)
            self.release()
            return
        self.held = Pending(say, frame, fast, self.job, time.monotonic() + self.cfg.slow_wait_s)
        self.release()

    def release(self) -> None:
        """Say the held description with the slow findings on its scene, once there are some
        (or its wait is over); a policy that decides on everything decides now."""
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
            self.log.write(
                "warning",
                held.frame.index,
                message="the slow channels took longer "
                f"than {self.cfg.slow_wait_s} s; said without them, and what they "
                "find is said when it comes",
            )
        d = self.channels.compose(held.fast + (done.findings if done else []))
        self.fast = held.fast
        say = held.say or self.decide(held.frame, held.fast, d)
        if say is None:
            return
        self.speak(say.text if held.say is None else d.text, held.frame, say.interrupt)
        self.read_said = _reads(done.findings) if done else self.read_said
        self.new_read = ((), 0)  # a later look's count starts afresh

    def _log_job(self, done) -> None:
        """Each slow job's findings, logged once (with how long each channel took)."""
        if done.job > self.logged:
            self.logged = done.job
            for f in done.findings:
                self.log.write(f.channel, done.index, ms=done.ms.get(f.channel), **f.report)

    def late(self) -> None:
        """Slow findings that came after their scene was said (text slower than slow_wait_s)
        or from a look at a still scene (recheck_s): logged, and said where they read
        something new (a new sign on the same wall), with the scene's fast findings."""
        if self.held is not None:
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
            self.speak(d.text, frame, True, index=done.index)

    def recheck(self, frame: Frame) -> None:
        """A frame the policy passed over (a still scene): the slow channels look at it now
        and then when idle, so text that appears without the scene changing is read."""
        now = time.monotonic()
        if (
            not self.cfg.recheck_s
            or self.policy.scenes_each
            or frame.image is None
            or now - self.looked < self.cfg.recheck_s
            or self.held is not None
        ):
            return
        self.looked = now
        job = self.worker.submit(frame.image, frame.index, None, if_idle=True)
        self.job = job or self.job
        if job:
            self.looks = {frame.index: frame}

    def ask(self, channel, frame: Frame) -> list | None:
        """All of one channel's findings on this frame (a key): a slow one's in the worker,
        waited for, a fast one's here; None when it failed or took too long."""
        if frame.image is None:
            return None
        if not channel.slow:
            return self.channels.everything(frame.image, channel)
        job = self.worker.ask(channel, frame.image, frame.index)
        deadline, done = time.monotonic() + 2 * self.cfg.slow_wait_s, None
        while done is None and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.02)
            done = self.worker.answer(job)
        return done.findings if done is not None else None

    def forget(self) -> None:
        """The camera came back: what was read before is new again."""
        self.read_said, self.new_read = (), ((), 0)

    def drain(self) -> None:
        """The run is ending: the held description is said (its wait is bounded by
        slow_wait_s), and the last scene's findings that are overdue when they come."""
        while self.held is not None:  # q just after Enter: the description is still said
            self.release()
            time.sleep(0.01)
        until = time.monotonic() + max(5.0, 4 * self.cfg.slow_wait_s)
        while self.overdue and time.monotonic() < until and not self.stop.is_set():
            self.late()
            time.sleep(0.02)

    def close(self) -> None:
        self.worker.close()


class NoSlowChannels:
    """SlowScenes where no slow channel runs: a description is said as soon as it is held."""

    active = False  # there are slow channels to wait for
    held = None

    def __init__(self, speak, channels):
        self.speak, self.channels = speak, channels

    def say_after(self, say: Say, frame: Frame, fast: list, d) -> None:
        self.speak(say.text, frame, say.interrupt)

    def ask(self, channel, frame: Frame) -> list | None:
        """All of a (fast) channel's findings on this frame; None when it failed."""
        if frame.image is None:
            return None
        return self.channels.everything(frame.image, channel)

    def look(self, *args) -> None:
        pass

    release = late = forget = drain = close = decide_after = recheck = look

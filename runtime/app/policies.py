"""Speech policies: when a frame is described, and what of it is said. Small interfaces, like
the token decoders of runtime/model/decoding.py; the describe loop (runtime/app/loop.py) is
only wiring.

    policy = make_policy(cfg)            # Change, Interval, Continuous, Manual, Find, Slideshow
    if policy.wants(frame, now):         # caption this frame?
        say = policy.decide(description, now)   # Say, or None: stay quiet
    policy.reset()                        # a camera came back: describe its scene afresh

A policy sees Descriptions (runtime.channels.compose) and thumbnails, never a model, so each is
tested on its own (tests/test_policies.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from runtime.channels import coco
from runtime.channels.places import spoken_place


@dataclass(frozen=True)
class Say:
    text: str
    key: tuple  # what was said, as the policy compares descriptions
    interrupt: bool = False  # cut off speech about an older scene


class Policy(Protocol):
    """What a policy needs of the loop it declares: these flags, all False by default (Base)."""

    keys: bool  # frames are described only when a key asks (Enter); the loop reads keys
    scenes_each: bool  # every frame it wants is a scene of its own (a slideshow, a key press)
    waits_for_speech: bool  # the next frame is read only once this one has been said
    complete: bool  # decides on the whole description, slow channels' findings included

    def wants(self, image: np.ndarray, now: float) -> bool:
        """Whether to describe this frame (8-bit BGR)."""

    def decide(self, d, now: float) -> Say | None:
        """What to say of a description of a frame this policy wanted, or None."""

    def reset(self) -> None:
        """Forget what was seen and said: the next scene is new."""

    def flush(self, d) -> Say | None:
        """The source has ended: what to say of its last description, which `decide` held
        back (a one-frame video, a scene cut short), or None."""

    def asked(self, d) -> Say:
        """What to say of a description a key asked for (Enter): all of it, at once."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """8-bit BGR frame -> 32x32 gray, for the change gate."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)


class ChangeGate:
    """A scene has changed when `fraction` of a 32x32 gray thumbnail's pixels moved by at least
    `delta` levels since the last frame that passed: a static scene skips the encoder."""

    def __init__(self, delta: int = 16, fraction: float = 0.005):
        self.delta, self.fraction = delta, fraction
        self.reference: np.ndarray | None = None

    def passes(self, image: np.ndarray, always: bool = False) -> bool:
        thumb = thumbnail(image)
        if self.reference is None or always:
            self.reference = thumb
            return True
        if float((np.abs(thumb - self.reference) >= self.delta).mean()) >= self.fraction:
            self.reference = thumb
            return True
        return False

    def reset(self) -> None:
        self.reference = None


class Base:
    """What a policy needs of the loop, by default nothing: see Policy."""

    keys = scenes_each = waits_for_speech = complete = False

    def flush(self, d) -> Say | None:
        return None

    def asked(self, d) -> Say:
        return Say(d.text, d.key, interrupt=True)


class Change(Base):
    """Describe when the scene changes; say a description once it came out the same on
    `stable_frames` described frames, and never the same twice in a row."""

    def __init__(self, stable_frames: int = 2, gate: ChangeGate | None = None):
        self.stable_frames, self.gate = stable_frames, gate or ChangeGate()
        self.pending: tuple[tuple, int] | None = None  # (key, times seen) not yet stable
        self.last_key: tuple | None = None

    def wants(self, image, now):
        return self.gate.passes(image, always=self.pending is not None)

    def decide(self, d, now):
        seen = self.pending[1] + 1 if self.pending and self.pending[0] == d.key else 1
        self.pending = (d.key, seen)
        if seen < self.stable_frames:
            return None
        self.pending = None
        if d.key == self.last_key:
            return None
        self.last_key = d.key
        return Say(d.text, d.key, interrupt=True)

    def reset(self):
        self.gate.reset()
        self.pending = self.last_key = None

    def flush(self, d):
        """A description not yet stable when the file ended is said, unless it was just said."""
        if d.key == self.last_key:
            return None
        self.pending, self.last_key = None, d.key
        return Say(d.text, d.key, interrupt=True)


class Interval(Base):
    """Describe and say every `interval_s` seconds."""

    def __init__(self, interval_s: float = 5.0):
        self.interval_s, self.next = interval_s, 0.0

    def wants(self, image, now):
        if now < self.next:
            return False
        self.next = now + self.interval_s
        return True

    def decide(self, d, now):
        return Say(d.text, d.key)

    def reset(self):
        self.next = 0.0


class Continuous(Base):
    """Describe every frame; the speech worker keeps only the newest waiting description."""

    def wants(self, image, now):
        return True

    def decide(self, d, now):
        return Say(d.text, d.key)

    def reset(self):
        pass


class Slideshow(Continuous):
    """A folder: every still is a new scene, said in full (the loop waits for speech before it
    reads the next)."""

    scenes_each = waits_for_speech = True


class Manual(Base):
    """Describe only when asked (a key): frames are never described on their own."""

    keys = scenes_each = True

    def wants(self, image, now):
        return False

    def decide(self, d, now):
        return self.asked(d)

    def reset(self):
        pass


class Find(Base):
    """Quiet until `name` (an object's spoken name or a word of text) is seen; then where it
    is, and again each time it moves to another place (or a channel's guide for it changes:
    "barcode ahead, closer", then "barcode ahead, reads 4, 0 0 6, ..."); silent while it stays
    put. A COCO class is found by any of its names ("mobile phone", "sofa", "cups")."""

    complete = True

    def __init__(self, name: str, style: str = "words", gate: ChangeGate | None = None):
        self.name, self.style = name.strip().lower(), style
        self.cls = coco.canonical(self.name)
        self.gate = gate or ChangeGate()
        self.last: tuple[str, str] | None = None  # (where, guide) it was last said to be

    def wants(self, image, now):
        return self.gate.passes(image)

    def seen_at(self, d) -> str | None:
        """Where the description places `name`: the first of its things (the surest first)
        that is it or a thing of its class, else the first word read that is it, as it is (a
        sign saying COFFEE is no cup)."""
        for name, where in getattr(d, "places", ()):
            name = name.lower()
            if name == self.name or (self.cls is not None and coco.canonical(name) == self.cls):
                return where
        return next((where for word, where in getattr(d, "words", ()) if word == self.name), None)

    def guide(self, d) -> str:
        """What a channel adds to the place ("closer": seen, too small to read), or ''."""
        return next(
            (g for f in getattr(d, "findings", ()) for name, g in f.guides if name == self.name), ""
        )

    def decide(self, d, now):
        where = self.seen_at(d)
        if where is None:
            return None
        guide = self.guide(d)
        if (where, guide) == self.last:
            return None
        self.last = (where, guide)
        said = f"{self.name} {spoken_place(where, self.style)}" + (f", {guide}" if guide else "")
        return Say(said, ("find", self.name, where, guide), interrupt=True)

    def reset(self):
        self.gate.reset()
        self.last = None


def make_policy(cfg, where: str = "words") -> Policy:
    """The policy a LoopConfig asks for; `where`: how Find says places (words or clock)."""
    gate = ChangeGate(cfg.change_delta, cfg.change_fraction)
    if cfg.find:
        find = Find(cfg.find, where, gate)
        find.keys = cfg.mode == "manual"  # found only when Enter asks
        if cfg.each_still and cfg.mode != "manual":  # a folder: each still is looked at in
            find.waits_for_speech = find.scenes_each = True  # full (slow channels too) in turn
        return find
    if cfg.each_still and cfg.mode != "manual":
        return Slideshow()
    policies: dict[str, Callable[[], Policy]] = {
        "change": lambda: Change(cfg.stable_frames, gate),
        "interval": lambda: Interval(cfg.interval_s),
        "continuous": Continuous,
        "manual": Manual,
    }
    return policies[cfg.mode]()

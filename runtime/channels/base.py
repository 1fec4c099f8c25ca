"""The channel interface: each channel looks at a frame and reports what it found; the composer
(runtime/channels/compose.py) turns the findings of every channel into one utterance.

    class Brightness:                       # a whole channel (tests/test_channels.py has it)
        name, slow = "brightness", False
        def run(self, frame, context):
            return Findings(self.name, said="it is bright" if frame.mean() > 128 else "it is dark")

    register("brightness", lambda setup: Brightness())   # one line in runtime/channels/registry.py

A fast channel runs on every described frame, in the describe loop's thread (the caption, the
ImageNet objects: both read the encoder pass that runs anyway). A slow one (text, the detector)
runs once per new scene in one background worker that never blocks capture; its findings join
the description before it is spoken.

What a channel finds is said in one of these ways, and the composer needs to know no more:
    facts      things it is sure of, by name, count and place ("two people ahead")
    guesses    things it is not sure of ("maybe a cup"); a description says at most one in brief
    sentence   a claim about the scene (the caption), stated only when the facts bear it out
    said       a phrase of its own, said as it is (a channel the composer does not know)
    read       text read off the scene, said last
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from runtime.model.bundle import Bundle
    from runtime.model.captioner import Caption
    from runtime.model.session import SessionConfig
    from runtime.model.where import Locator


@dataclass(frozen=True)
class Thing:
    """One kind of thing in view: what a fact or a guess names."""

    name: str  # the spoken name ("cat", "tripod", "table")
    phrase: str  # as said: counted and placed ("two people ahead", "a cup on your right")
    score: float  # the channel's confidence in it, 0..1
    cls: str | None = None  # its COCO class where it has one ("dining table"): what matches it
    # across channels and against a caption's words
    kind: str | None = None  # what kind of thing it is (mammal, wheeled vehicle: the bundle's
    # kinds table), for the ImageNet head's reconciliation with the caption
    confirm: bool = False  # a fact only when another channel's fact has its class (the
    # ImageNet head naming a COCO thing the detector did not see is a guess)
    rank: float = 0.0  # the higher the more useful to say first (people, large, central)


@dataclass(frozen=True)
class Sentence:
    """A claim about the whole scene (the caption) with the decoder's confidence in it."""

    text: str
    confidence: float | None  # calibrated 0..1, None without a calibration
    threshold: float | None  # the bundle's: under it the sentence is only a guess


@dataclass(frozen=True)
class Findings:
    channel: str  # the channel's registry name
    facts: tuple[Thing, ...] = ()
    guesses: tuple[Thing, ...] = ()
    glimpsed: tuple[str, ...] = ()  # COCO classes seen too faintly to say, enough to let the
    # caption name them as a guess
    sentence: Sentence | None = None
    said: str = ""  # said as it is, after the things seen
    read: str = ""  # text read off the scene ("Sign: EXIT"), said last
    places: tuple[tuple[str, str], ...] = ()  # (thing's name, left|ahead|right) for find mode,
    # the most likely first
    words: tuple[tuple[str, str], ...] = ()  # (word read, where) for find mode: matched as it is
    guides: tuple[tuple[str, str], ...] = ()  # (thing's name, what find mode adds to its place):
    # "closer" where it is seen but too small to read, what it reads once read
    key: tuple = ()  # what must change for the change policy to speak again
    covers: bool = False  # it looks for every COCO class: one it did not see is likely absent
    report: dict = field(default_factory=dict)  # its keys in caption's JSON and the log
    value: object = None  # the channel's own result (a Caption, list[Detection], ...)


@dataclass(frozen=True)
class Context:
    """What a channel may use beside the frame."""

    caption: Caption | None = None  # of this frame (runtime.model.captioner): the encoder pass
    # (its ImageNet logits and feature map) that every fast channel shares
    locator: Locator | None = None  # runtime.model.where: where the ImageNet head's names are
    where: str = "words"  # words ("on your left") or clock ("at 10 o'clock")
    verbosity: str = "brief"  # brief or full
    everything: bool = False  # a key asked for all of it (manual mode's "t": every line)


class Channel(Protocol):
    name: str
    slow: bool  # runs once per scene in the background worker (True) or on every frame
    key: str  # manual mode's key for this channel alone ("t" for text), or ""
    # and, optionally, finds = True: find mode looks in its places or words (runtime.policies.Find)

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        """8-bit BGR frame -> what this channel found in it."""


@dataclass(frozen=True)
class Setup:
    """What a channel is built from: the bundle and where it runs, and the CLI's settings."""

    bundle: Bundle  # runtime.model.bundle
    precision: str = "int8"
    session: SessionConfig | None = None  # of the device profile (runtime.model.session)
    where: str = "words"
    verbosity: str = "brief"
    live: bool = False  # a camera or stream (not files)
    has_objects: bool = False  # the encoder has the ImageNet head
    detector: str | Path | None = None  # its folder (None: this checkout's models/detector)

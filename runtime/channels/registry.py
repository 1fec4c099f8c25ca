"""Every channel, by name, in the order their findings are composed: one line each.

    names = resolve("auto", setup)           # ("caption", "objects", "detector", "text")
    channels = ChannelSet(captioner, names, setup)
    fast = channels.run_fast(frame)          # (Caption, [Findings]) of the fast channels
    slow = channels.run_slow(frame, fast[0]) # [Findings] of the slow ones (a worker's job)
    channels.compose(fast[1] + slow).text    # "I see two people ahead. Sign: EXIT"

A channel module gives a class that takes a Setup and has `name`, `slow`, `key` and `run()`
(runtime/channels/base.py), and `usable(setup)`: None, or why this bundle or machine cannot
have it; and may give `HINT`, what `doctor` says to do when it cannot. A test or a plugin may
also `register()` a factory of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from runtime.channels.base import Channel, Context, Findings, Setup
from runtime.channels.compose import ComposeConfig, Description, compose
from runtime.options import OptionError

# name -> "module:Class" (or a factory taking a Setup); auto: on by default for a real-photo bundle
REGISTRY: dict[str, str | Callable[[Setup], Channel]] = {
    "caption": "runtime.channels.caption:CaptionChannel",  # the bundle's sentence
    "objects": "runtime.channels.objects:ObjectsChannel",  # the ImageNet head's names
    "detector": "runtime.channels.detector:DetectorChannel",  # COCO things, counted and placed
    "text": "runtime.channels.text:TextChannel",  # signs, labels and pages read aloud
    "barcode": "runtime.channels.barcode:BarcodeChannel",  # product codes and QR codes
    "colour": "runtime.channels.colour:ColourChannel",  # the main colours of the centre
    "light": "runtime.channels.light:LightChannel",  # dark, dim or bright, and where a light is
}
AUTO = ("caption", "objects", "detector", "text", "barcode")  # what auto turns on, where usable
ALIASES = {"both": ("caption", "objects")}


def register(name: str, factory: str | Callable[[Setup], Channel]) -> None:
    """Adds a channel after the built-in ones (its findings are composed after theirs)."""
    REGISTRY[name] = factory


def _module(name: str):
    entry = REGISTRY[name]
    return importlib.import_module(entry.split(":")[0]) if isinstance(entry, str) else None


def why_not(name: str, setup: Setup) -> str | None:
    """Why the channel cannot run with this bundle, or None."""
    module = _module(name)
    check = getattr(module, "usable", None) if module is not None else None
    return check(setup) if check is not None else None


def _cls(name: str):
    """The channel's class (None for a factory that is not one)."""
    entry = REGISTRY[name]
    return (
        getattr(_module(name), entry.split(":")[1])
        if isinstance(entry, str)
        else entry
        if isinstance(entry, type)
        else None
    )


def hint(name: str) -> str | None:
    """What to do when the channel cannot run (its module's HINT), or None."""
    module = _module(name)
    return getattr(module, "HINT", None) if module is not None else None


def build(name: str, setup: Setup) -> Channel:
    entry = REGISTRY[name]
    if isinstance(entry, str):
        return getattr(_module(name), entry.split(":")[1])(setup)
    return entry(setup)


def choices() -> str:
    return ", ".join(REGISTRY)


def summaries() -> dict[str, str]:
    """name -> what the channel does: the comment on its REGISTRY line (for the help)."""
    import inspect
    import re

    try:
        module = inspect.getmodule(summaries)
        if module is None:
            return {}
        lines = inspect.getsource(module).splitlines()
    except (OSError, TypeError):  # installed without its sources: the names alone
        return {}
    found = (re.match(r'\s+"(\w+)": .*#\s*(.+)$', line) for line in lines)
    return {m[1]: m[2] for m in found if m and m[1] in REGISTRY}


def finders(setup: Setup) -> tuple[str, ...]:
    """The usable channels that can place a thing or a word for find mode (their class says
    `finds = True`), in registry order."""
    return tuple(
        n for n in REGISTRY if getattr(_cls(n), "finds", False) and why_not(n, setup) is None
    )


def on_key(names: tuple[str, ...], setup: Setup) -> tuple[str, ...]:
    """The usable fast channels with a manual key that are not in `names`: their key works
    whichever channels are on ("c": the colours now), as they cost next to nothing."""
    return tuple(
        n
        for n in REGISTRY
        if n not in names
        and bool(getattr(_cls(n), "key", ""))
        and getattr(_cls(n), "slow", True) is False
        and why_not(n, setup) is None
    )


def resolve(spec: str, setup: Setup) -> tuple[str, ...]:
    """The channels to run, in registry order. `spec` is auto, all, both (caption,objects) or
    a comma list. auto: a real-photo bundle runs every usable channel of AUTO; a synthetic-scenes
    bundle says only the objects on a live camera (its captions name shapes that are not in a
    room), and its caption elsewhere. all: every usable channel. A named channel that cannot
    run is an error that says why."""
    if spec == "auto":
        if setup.bundle.synthetic:
            chosen = {"objects"} if setup.live and setup.has_objects else {"caption"}
        else:
            chosen = {n for n in AUTO if n in REGISTRY and why_not(n, setup) is None}
    elif spec == "all":
        chosen = {n for n in REGISTRY if why_not(n, setup) is None}
    else:
        chosen = set()
        for name in (n.strip() for n in spec.split(",")):
            if name not in REGISTRY and name not in ALIASES:
                raise OptionError(
                    "channel", repr(spec), f"use auto, all, both, or a comma list of {choices()}"
                )
            chosen.update(ALIASES.get(name, (name,)))
        for name in sorted(chosen):
            reason = why_not(name, setup)
            if reason:
                raise OptionError("channel", spec, reason)
    return tuple(n for n in REGISTRY if n in chosen)


def _stderr(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


class ChannelSet:
    """The channels of a run around one captioner: its encoder pass is shared by every fast
    channel, the slow ones run where the caller says (the describe loop's worker). A fast
    channel that fails on a frame is left out of that frame's description, and `on_error`
    hears of it once per channel."""

    def __init__(self, captioner, names: tuple[str, ...], setup: Setup, on_error=_stderr):
        self.captioner, self.names, self.setup, self.on_error = captioner, names, setup, on_error
        self._failed: set[str] = set()
        channels = [build(n, setup) for n in names]
        self.fast = [c for c in channels if not c.slow]
        self.slow = [c for c in channels if c.slow]
        full = setup.verbosity == "full"
        self.compose_cfg = ComposeConfig.full() if full else ComposeConfig()
        self.keys = {c.key: c for c in channels if c.key}  # manual mode's keys
        for name in on_key(names, setup):  # a fast channel's key works even when it is off
            channel = build(name, setup)
            self.keys.setdefault(channel.key, channel)

    def context(self, caption, everything: bool = False) -> Context:
        return Context(
            caption,
            getattr(self.captioner, "locator", None),
            self.setup.where,
            self.setup.verbosity,
            everything,
        )

    def run_fast(self, frame: np.ndarray):
        """(the frame's Caption, the fast channels' findings). A frame the captioner cannot
        take raises InputError."""
        caption = self.captioner.caption(frame)
        return caption, self._guarded(self.fast, frame, self.context(caption))

    def _guarded(self, channels: list, frame: np.ndarray, ctx: Context) -> list[Findings]:
        found = []
        for c in channels:
            try:
                found.append(c.run(frame, ctx))
            except Exception as e:  # one channel failing never silences the others
                if c.name not in self._failed:
                    self._failed.add(c.name)
                    self.on_error(f"{c.name} channel failed on a frame ({type(e).__name__}: {e})")
        return found

    def run_slow(
        self, frame: np.ndarray, caption=None, only: Channel | None = None, everything: bool = False
    ) -> list[Findings]:
        """The slow channels' findings (or `only` that channel's, with `everything`: all of
        it, for a key); an exception is the caller's (the worker warns once per channel)."""
        ctx = self.context(caption, everything)
        return [c.run(frame, ctx) for c in ([only] if only is not None else self.slow)]

    def everything(self, frame: np.ndarray, channel: Channel) -> list[Findings] | None:
        """All of one channel's findings on a frame (a key asked for it), the caption's
        included; None, with a warning, when it failed."""
        try:
            return self.run_slow(frame, self.captioner.caption(frame), channel, everything=True)
        except Exception as e:
            self.on_error(f"{channel.name} channel failed ({type(e).__name__}: {e})")
            return None

    def compose(self, findings: list[Findings]) -> Description:
        order = {n: i for i, n in enumerate(REGISTRY)}
        ordered = sorted(findings, key=lambda f: order.get(f.channel, len(order)))
        return compose(ordered, self.captioner.bundle.kinds, self.compose_cfg)

    def describe(self, frame: np.ndarray):
        """(Caption, Description) of one frame with every channel, slow ones included."""
        caption, fast = self.run_fast(frame)
        return caption, self.compose(fast + self._guarded(self.slow, frame, self.context(caption)))

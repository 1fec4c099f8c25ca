"""One way to assemble SceneSpeak: frozen options in, a ready captioner and channel set out.
`caption`, `describe`, `bench` and `doctor` all build through here.

    opts = ModelOptions(model="models/default", beam=3)  # ranges are checked here, before
    cap, where = captioner(opts, warn=print)             # onnxruntime is imported
    channels = channel_set(cap, where, ChannelOptions(channel="all"))
    result, description = channels.describe(frame)

Each field's comment is its `--help` text (runtime/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import DATA
from runtime.app.profiles import place, profile_names
from runtime.model.decoding import MAX_BEAM
from runtime.model.io_spec import PRECISIONS
from runtime.model.session import MAX_THREADS
from runtime.options import OptionError, check, number

DEFAULT_MODEL = str(DATA / "models" / "default")


@dataclass(frozen=True)
class ModelOptions:
    model: str = ""  # bundle folder (default: models/default, the real-photo model;
    # models/shapes: the synthetic-scenes one)
    precision: str | None = None  # default: the fastest the bundle and device offer (int8 on CPU)
    threads: int = 0  # ONNX Runtime intra-op threads of the encoder (0: the device profile's,
    # else every core; up to 64); the decoder step always uses one
    device: str = "auto"  # device profile from device/profiles (auto: detect the board)
    beam: int = 1  # beam search with this many beams, batched through the step graph (1:
    # greedy; up to 16)

    def __post_init__(self):
        check(
            self,
            "precision",
            self.precision is None or self.precision in PRECISIONS,
            f"choose one of {', '.join(PRECISIONS)}",
        )
        check(
            self,
            "threads",
            number(self.threads, int) and 0 <= self.threads <= MAX_THREADS,
            f"use 0 (auto) to {MAX_THREADS} threads",
        )
        check(
            self,
            "beam",
            number(self.beam, int) and 1 <= self.beam <= MAX_BEAM,
            f"use 1 (greedy) to {MAX_BEAM} beams",
        )
        names = profile_names()
        if not (isinstance(self.device, str) and (self.device == "auto" or self.device in names)):
            raise OptionError("device", repr(self.device), f"no such profile (have: "
                              f"{', '.join(names)})")  # fmt: skip

    @property
    def bundle(self) -> str:
        """The bundle folder: `model`, or the shipped real-photo bundle."""
        return self.model or DEFAULT_MODEL


@dataclass(frozen=True)
class ChannelOptions:
    channel: str = "auto"  # the channels that describe a frame:
    where: str = "words"  # how places are said: words ("a cat on your left") or clock ("a cat
    # at 10 o'clock")
    verbosity: str = "brief"  # brief: the most useful first, a page's first lines; full: more
    # names, guesses and every line of text

    def __post_init__(self):
        check(self, "where", self.where in ("words", "clock"), "choose words or clock")
        check(self, "verbosity", self.verbosity in ("brief", "full"), "choose brief or full")


def placement(bundle, opts: ModelOptions, available=None, board=None):
    """Where the bundle runs: the device profile, its providers, the precision and the session
    options (runtime.app.profiles.Placement); `available` and `board` stand in for this
    machine's (doctor's tests)."""
    return place(bundle, opts.device, opts.precision, opts.threads, available, board)


def captioner(opts: ModelOptions, warn=None):
    """(Captioner, Placement) for these options; `warn` gets the one-line warning when the
    device profile's GPU providers are missing and the CPU runs instead."""
    from runtime.model.bundle import load_bundle

    bundle = load_bundle(opts.bundle)
    where = placement(bundle, opts)
    if where.plan.warning and warn is not None:
        warn(where.plan.warning)
    return sessions(bundle, where, opts.beam), where


def sessions(bundle, where, beam: int = 1):
    """The Captioner: the bundle's two graphs in ONNX Runtime where `placement` put them."""
    from runtime.model.captioner import Captioner

    return Captioner(bundle, where.precision, where.session, beam)


def setup(cap, where, opts: ChannelOptions = ChannelOptions(), live: bool = False):
    """What every channel is built from (runtime.channels.base.Setup), as describe builds it."""
    from runtime.channels.base import Setup

    return Setup(
        cap.bundle, cap.precision, where.session, opts.where, opts.verbosity, live, cap.has_objects
    )


def channel_set(
    cap,
    where,
    opts: ChannelOptions = ChannelOptions(),
    live: bool = False,
    find: bool = False,
    on_error=None,
):
    """The ChannelSet of `opts.channel` (auto resolved for this bundle and source); with
    `find`, every channel that can find a thing or a word."""
    from runtime.channels.registry import ChannelSet, finders, resolve

    s = setup(cap, where, opts, live)
    names = finders(s) if find else resolve(opts.channel, s)
    if on_error is None:
        return ChannelSet(cap, names, s)
    return ChannelSet(cap, names, s, on_error=on_error)

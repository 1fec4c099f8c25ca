"""The objects channel: real-world object names from the encoder's ImageNet head.

The encoder graph also returns the 1000 ImageNet logits of its backbone. Classes that share a
spoken name (five cat breeds, 118 dog breeds) are pooled by adding their probabilities, then:

    pooled top >= sure               "I see a cat"
    pooled top >= maybe              "maybe a cup or a bowl"   (every name above `maybe`)
    otherwise                        "not sure"

A name below `sure` is never said as a fact. Channels (`--channel`): caption, objects and
text (runtime/channels/text.py), in any comma list, `both` (caption,objects) or `all`, composed
into one utterance by runtime.channels.compose. `auto` follows the bundle: a bundle trained on
real photos uses all three; one whose captions describe synthetic scenes says only the objects
on live cameras, since its captions say nothing true about a real room (it names shapes that
are not there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.channels.compose import NOTHING, Description, compose  # noqa: F401 (re-exported)
from runtime.errors import InputError
from runtime.model.bundle import Bundle
from runtime.model.where import place

PARTS = ("caption", "objects", "text")  # the channels; --channel takes any comma list of them
ALIASES = {"both": ("caption", "objects"), "all": PARTS}
CHANNELS = ("auto", "caption", "objects", "both")  # the older single names, listed in --help


def parts(channel: str) -> set[str]:
    """A resolved channel ("caption,objects,text") as the set of its parts."""
    return set(channel.split(",")) if channel else set()


@dataclass(frozen=True)
class ObjectsConfig:
    sure: float = 0.7  # pooled probability to name an object as a fact
    maybe: float = 0.15  # least pooled probability of a hedged name
    most: int = 2  # hedged names at most ("maybe a cup or a bowl")
    report: int = 3  # names with scores in `caption --json`
    place_hedged: bool = False  # also say where the hedged names are (verbosity full)


@dataclass(frozen=True)
class Objects:
    text: str  # what is spoken
    named: tuple[str, ...]  # the names spoken (empty when not sure)
    sure: bool  # named as a fact
    top: list[dict]  # [{"name", "score"}] highest pooled scores, for JSON ("where" too, when placed)
    places: tuple[tuple[str, str], ...] = ()  # (name, left|ahead|right) of each name placed


def with_article(name: str) -> str:
    """'a cup', 'an orange', 'sunglasses' (plural-looking names take none)."""
    if name.endswith("s") and not name.endswith(("ss", "us", "is")):
        return name
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


class ObjectNamer:
    """ImageNet logits (1000,) -> Objects, through the bundle's spoken-name table."""

    def __init__(self, names: tuple[str, ...], cfg: ObjectsConfig = ObjectsConfig()):
        if not 0 < cfg.maybe <= cfg.sure <= 1:
            raise InputError(f"objects thresholds: need 0 < maybe ({cfg.maybe}) <= sure ({cfg.sure}) <= 1")
        self.cfg = cfg
        self.names = tuple(dict.fromkeys(names))  # unique, in first-seen order
        index = {n: i for i, n in enumerate(self.names)}
        self.group = np.array([index[n] for n in names])

    def __call__(self, logits: np.ndarray, locate=None, style: str = "words") -> Objects:
        """`locate(name)` -> left|ahead|right places each name said ("a cat on your left"; with
        style "clock", "a cat at 10 o'clock") and each reported in `top`."""
        z = np.asarray(logits, dtype=np.float64).reshape(-1)
        if z.shape[0] != len(self.group):
            raise InputError(f"objects: {z.shape[0]} logits for {len(self.group)} class names")
        p = np.exp(z - z.max())
        pooled = np.bincount(self.group, weights=p / p.sum(), minlength=len(self.names))
        order = np.argsort(-pooled, kind="stable")
        top = [{"name": self.names[i], "score": round(float(pooled[i]), 4)}
               for i in order[: self.cfg.report]]
        places = {t["name"]: locate(t["name"]) for t in top} if locate is not None else {}
        for t in top:
            if places.get(t["name"]):
                t["where"] = places[t["name"]]

        def said(name: str, placed: bool = True) -> str:
            where = places.get(name) if placed else None
            return with_article(name) + (f" {place(where, style)}" if where else "")

        best = float(pooled[order[0]])
        if best >= self.cfg.sure:
            name = self.names[order[0]]
            return Objects(f"I see {said(name)}", (name,), True, top,
                           tuple((n, places[n]) for n in (name,) if places.get(n)))
        hedged = tuple(self.names[i] for i in order[: self.cfg.most] if pooled[i] >= self.cfg.maybe)
        if hedged:
            return Objects("maybe " + " or ".join(said(n, self.cfg.place_hedged) for n in hedged),
                           hedged, False, top,
                           tuple((n, places[n]) for n in hedged if places.get(n)))
        return Objects("not sure", (), False, top)


def resolve_channel(channel: str, bundle: Bundle, live: bool, has_objects: bool,
                    has_text: bool = True) -> str:
    """The channels to use, as a comma list in the order caption, objects, text. `channel` is
    auto, all, both (caption,objects) or a comma list of caption, objects and text. `auto`: a
    bundle trained on real photos says its caption and the objects together, with any text
    read; a synthetic-scenes bundle says only the objects on a live camera, and its caption
    elsewhere (its scenes have no text). Asking for objects from a bundle without the head is
    an error."""
    if channel == "auto":
        if not bundle.synthetic:
            chosen = {"caption", "text"} | ({"objects"} if has_objects else set())
            chosen -= set() if has_text else {"text"}
        else:
            chosen = {"objects"} if live and has_objects else {"caption"}
    else:
        chosen = set()
        for name in channel.split(","):
            name = name.strip()
            if name not in PARTS and name not in ALIASES:
                raise InputError(f"--channel {channel!r}: use auto, all, both, or a comma list of "
                                 f"{', '.join(PARTS)}")
            chosen.update(ALIASES.get(name, (name,)))
        if "objects" in chosen and not has_objects:
            raise InputError(f"--channel {channel}: {bundle.root} has no objects head (its encoder "
                             "does not output ImageNet logits); export it again")
    return ",".join(p for p in PARTS if p in chosen)


def describe(result, channel: str, namer: ObjectNamer | None, bundle: Bundle | None = None,
             text: str | None = None, locator=None, style: str = "words") -> Description:
    """A Caption (runtime.model.captioner) in the chosen channels, composed into one utterance
    (runtime.channels.compose), with `text` (what the text channel read, spoken form) last, and the
    objects placed by `locator` (runtime.model.where; `style` words or clock). The key
    holds the caption and the set of objects named, so "maybe a cup or a bowl" and "maybe a
    bowl or a cup" are one. With `bundle`, its confidence threshold and kinds table apply."""
    on = parts(channel)
    caption = result.text if "caption" in on else None
    objects = None
    if "objects" in on:
        if namer is None or result.imagenet_logits is None:
            raise InputError(f"--channel {channel}: the encoder gave no ImageNet logits")
        fmap = getattr(result, "feature_map", None)
        locate = None if locator is None or fmap is None else \
            (lambda name: locator.where(fmap, result.imagenet_logits, name))
        objects = namer(result.imagenet_logits, locate, style)
    calibration = bundle.confidence if bundle is not None else None
    return compose(caption, getattr(result, "confidence", None), objects,
                   calibration["threshold"] if calibration else None,
                   bundle.kinds if bundle is not None else None,
                   text if "text" in on else None)

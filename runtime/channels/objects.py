"""The objects channel: real-world object names from the encoder's ImageNet head.

The encoder graph also returns the 1000 ImageNet logits of its backbone. Classes that share a
spoken name (five cat breeds, 118 dog breeds) are pooled by adding their probabilities, then:

    pooled top >= sure               "I see a cat"
    pooled top >= maybe              "maybe a cup or a bowl"   (every name above `maybe`)
    otherwise                        nothing

A name below `sure` is never said as a fact, and a sure name that is one of COCO's classes is
a fact only where the detector (runtime/channels/detector.py) saw it too: the head stays for
what COCO lacks (the tripod, the espresso, the cat's breed). Its places come from the head's
own class activation map (runtime.model.where), said by runtime.channels.places.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.channels import coco
from runtime.channels.base import Context, Findings, Setup, Thing
from runtime.channels.places import spoken_place, third_of
from runtime.errors import InputError


@dataclass(frozen=True)
class ObjectsConfig:
    sure: float = 0.7  # pooled probability to name an object as a fact
    maybe: float = 0.15  # least pooled probability of a hedged name
    most: int = 2  # hedged names at most ("maybe a cup or a bowl")
    report: int = 3  # names with scores in caption's JSON
    place_hedged: bool = False  # also say where the hedged names are (verbosity full)


@dataclass(frozen=True)
class Objects:
    text: str  # what is spoken
    named: tuple[str, ...]  # the names spoken (empty when not sure)
    sure: bool  # named as a fact
    top: list[
        dict
    ]  # [{"name", "score"}] highest pooled scores, for JSON ("where" too, when placed)
    places: tuple[tuple[str, str], ...] = ()  # (name, left|ahead|right) of each name placed


with_article = coco.with_article  # "a cup", "sunglasses", "coffee"


def placed(name: str, where: str | None, style: str = "words") -> str:
    """'a cat on your left' ('a cat at 10 o'clock' with style clock), 'a cat' unplaced."""
    return with_article(name) + (f" {spoken_place(where, style)}" if where else "")


class ObjectNamer:
    """ImageNet logits (1000,) -> Objects, through the bundle's spoken-name table."""

    def __init__(self, names: tuple[str, ...], cfg: ObjectsConfig = ObjectsConfig()):
        if not 0 < cfg.maybe <= cfg.sure <= 1:
            raise InputError(
                f"objects thresholds: need 0 < maybe ({cfg.maybe}) <= sure ({cfg.sure}) <= 1"
            )
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
        top = [
            {"name": self.names[i], "score": round(float(pooled[i]), 4)}
            for i in order[: self.cfg.report]
        ]
        places = {t["name"]: locate(t["name"]) for t in top} if locate is not None else {}
        for t in top:
            if places.get(t["name"]):
                t["where"] = places[t["name"]]

        def said(name: str, located: bool = True) -> str:
            return placed(name, places.get(name) if located else None, style)

        best = float(pooled[order[0]])
        if best >= self.cfg.sure:
            name = self.names[order[0]]
            return Objects(
                f"I see {said(name)}",
                (name,),
                True,
                top,
                tuple((n, places[n]) for n in (name,) if places.get(n)),
            )
        hedged = tuple(self.names[i] for i in order[: self.cfg.most] if pooled[i] >= self.cfg.maybe)
        if hedged:
            return Objects(
                "maybe " + " or ".join(said(n, self.cfg.place_hedged) for n in hedged),
                hedged,
                False,
                top,
                tuple((n, places[n]) for n in hedged if places.get(n)),
            )
        return Objects("not sure", (), False, top)


class ObjectsChannel:
    """The ImageNet head's names, from the encoder pass every frame has (fast)."""

    name, slow, key = "objects", False, ""
    finds = True  # find mode looks in its places (or words)

    def __init__(self, setup: Setup):
        full = setup.verbosity == "full"
        self.namer = ObjectNamer(
            setup.bundle.object_names(), ObjectsConfig(most=3 if full else 2, place_hedged=full)
        )
        self.kinds = setup.bundle.kinds.get("objects", {})

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        result = context.caption
        if result is None or result.imagenet_logits is None:
            raise InputError("the objects channel: the encoder gave no ImageNet logits")
        logits, locator, fmap = result.imagenet_logits, context.locator, result.feature_map
        locate = (
            None
            if locator is None or fmap is None
            else (lambda name: third_of(locator.centre(fmap, logits, name)))
        )
        o = self.namer(logits, locate, context.where)
        scores = {t["name"]: t["score"] for t in o.top}
        places = dict(o.places)

        def thing(name: str) -> Thing:
            cls = coco.canonical(name)
            phrase = placed(name, places.get(name), context.where)
            return Thing(
                name,
                phrase,
                scores.get(name, 0.0),
                cls,
                self.kinds.get(name),
                confirm=cls is not None,
                rank=scores.get(name, 0.0),
            )

        named = tuple(thing(n) for n in o.named)
        return Findings(
            self.name,
            facts=named if o.sure else (),
            guesses=() if o.sure else named,
            places=o.places,
            key=(frozenset(o.named), o.sure),
            report={"objects": o.top},
            value=o,
        )


def usable(setup: Setup) -> str | None:
    """Why this bundle has no objects channel, or None."""
    return (
        None
        if setup.has_objects
        else (
            f"{setup.bundle.root} has no objects head (its encoder "
            "does not output ImageNet logits); export it again"
        )
    )

"""The detector channel: COCO's 80 classes with their boxes (runtime/model/detector.py runs the
bundle's detector graph), said with their count and place, the most useful first:

    "I see two people ahead, a table on your left and a cup on your right"

A class is a fact at its threshold (the bundle's, chosen on the COCO-everyday dev photos; a
class may have its own in the manifest's `thresholds`), a guess under it down to `guess`, and
only glimpsed (never said, but enough for the caption to name it as a guess) down to
`support`. Places come from the boxes' centres (thirds of the frame, or clock positions).
People come first, then the larger and the more central. It runs once per new scene, in the
background worker (slow), and find mode uses its boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runtime.channels import coco
from runtime.channels.base import Context, Findings, Setup, Thing
from runtime.channels.places import THIRDS, spoken_place, third
from runtime.model.detector import DEFAULT, load_detector, load_detector_bundle
from runtime.model.io_spec import MANIFEST
from runtime.model.session import SessionConfig

HINT = "make models-detector (it builds models/detector)"


@dataclass(frozen=True)
class DetectorConfig:
    fact: float = 0.5  # least score of a detection said as a fact (the bundle's per-class
    # thresholds override it)
    guess: float = 0.4  # least score of one said as a guess ("maybe a cup")
    support: float = 0.3  # least score of one that lets a caption name its class as a guess,
    # and the ImageNet head state it


def rank(cls: str, box: tuple[int, int, int, int], width: int, height: int) -> float:
    """How useful a thing is to say first: people, then the larger and the more central."""
    x0, y0, x1, y1 = box
    area = max(0, x1 - x0) * max(0, y1 - y0) / max(1, width * height)
    off = abs((x0 + x1) / 2 / max(1, width) - 0.5)
    return (1.0 if cls == "person" else 0.0) + area * (1 - off)


def group(
    detections: list,
    thresholds: dict[str, float],
    default: float,
    width: int,
    height: int,
    style: str = "words",
) -> list[Thing]:
    """Detections at their class's threshold -> one Thing per class: counted, placed by the
    thirds their boxes' centres fall in, ordered most useful first."""
    by: dict[str, list] = {}
    for d in detections:
        if d.score >= thresholds.get(d.name, default):
            by.setdefault(d.name, []).append(d)
    things = []
    for cls, ds in by.items():
        ds = sorted(ds, key=lambda d: -rank(cls, d.box, width, height))
        wheres = sorted({third(d.box[0], d.box[2], width) for d in ds}, key=THIRDS.index)
        phrase = f"{coco.counted(cls, len(ds))} " + (
            " and ".join(spoken_place(w, style) for w in wheres)
            if len(wheres) < 3
            else "from left to right"
            if style == "words"
            else "from 10 to 2 o'clock"
        )
        things.append(
            Thing(
                coco.spoken(cls),
                phrase,
                max(d.score for d in ds),
                cls,
                rank=max(rank(cls, d.box, width, height) for d in ds),
            )
        )
    return sorted(things, key=lambda t: -t.rank)


class DetectorChannel:
    name, slow, key = "detector", True, ""
    finds = True  # find mode looks in its places (or words)

    def __init__(self, setup: Setup, cfg: DetectorConfig = DetectorConfig()):
        bundle = load_detector_bundle(folder(setup))
        spec = bundle.spec
        self.detector = load_detector(
            bundle, setup.precision, own_engine_cache(setup.session or SessionConfig(), spec)
        )
        self.cfg = cfg
        self.thresholds = {k: float(v) for k, v in spec.get("thresholds", {}).items()}
        self.fact = float(spec["threshold"])

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        h, w = frame.shape[:2]
        found = self.detector.detect(frame, min(self.cfg.support, self.fact))
        return findings(found, w, h, self.thresholds, self.fact, self.cfg, context.where)


def findings(
    found: list,
    width: int,
    height: int,
    thresholds: dict[str, float],
    fact: float,
    cfg: DetectorConfig = DetectorConfig(),
    style: str = "words",
) -> Findings:
    """A frame's detections (runtime.model.detector.Detection) -> the channel's findings: facts
    at their class's threshold, guesses under it down to cfg.guess, glimpses down to
    cfg.support; places for find mode, the surest first; the report for JSON and the log."""
    facts = group(found, thresholds, fact, width, height, style)
    stated = {t.cls for t in facts if t.cls is not None}  # group() gives each its class
    best: dict[str, float] = {}
    for d in found:
        best[d.name] = max(best.get(d.name, 0.0), d.score)
    guesses = tuple(
        Thing(coco.spoken(c), coco.with_article(coco.spoken(c)), s, c)
        for c, s in sorted(best.items(), key=lambda kv: -kv[1])
        if c not in stated and s >= cfg.guess
    )
    glimpsed = tuple(c for c, s in best.items() if c not in stated and s >= cfg.support)
    counts = {
        c: sum(d.name == c and d.score >= thresholds.get(c, fact) for d in found) for c in stated
    }
    report = [
        {
            "name": coco.spoken(d.name),
            "class": d.name,
            "score": round(float(d.score), 4),
            "box": list(d.box),
            "where": third(d.box[0], d.box[2], width),
            "count": counts.get(d.name, 0),
            "stated": d.name in stated,
        }
        for d in found
    ]
    places = tuple(
        (coco.spoken(d.name), third(d.box[0], d.box[2], width))
        for d in sorted(found, key=lambda d: -d.score)
        if d.score >= cfg.guess
    )
    return Findings(
        "detector",
        facts=tuple(facts),
        guesses=guesses,
        glimpsed=glimpsed,
        places=places,
        key=tuple(sorted(counts.items())),
        covers=True,
        report={"detections": report},
        value=found,
    )


def own_engine_cache(session: SessionConfig, spec: dict) -> SessionConfig:
    """The session options with TensorRT's engine cache in a folder of the detector's own,
    named by its graphs' hashes (a rebuilt detector never loads a stale engine), and its fp16
    mode off: the detector is validated in fp32 and int8 only."""
    digest = "".join(sorted(f.sha256[:8] for f in spec["files"].values()))
    providers = []
    for name, options in session.providers:
        if "trt_engine_cache_path" in options:
            cache = str(Path(options["trt_engine_cache_path"]).parent / f"detector-{digest}")
            options = {**options, "trt_engine_cache_path": cache, "trt_fp16_enable": False}
            if "trt_timing_cache_path" in options:
                options["trt_timing_cache_path"] = cache
        providers.append((name, options))
    return replace(session, providers=tuple(providers))


def folder(setup: Setup) -> Path:
    return Path(setup.detector) if setup.detector is not None else DEFAULT


def usable(setup: Setup) -> str | None:
    path = folder(setup) / MANIFEST
    return (
        None if path.is_file() else f"{path}: no detector here (`make models-detector` builds it)"
    )

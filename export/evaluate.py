"""Evaluate captions against references: exact match with the first (canonical) caption, and
BLEU-1..4, METEOR (where Java is present), ROUGE-L and CIDEr from pycocoevalcap, for a bundle
through the runtime at any precision and beam size, or for a torch checkpoint.

    python -m export evaluate --model models/shapes --data data/scenes-test --precisions fp32,int8
    python -m export evaluate --model models/default --beam 1,3 \
        --data flickr8k:../shared/datasets/flickr8k/Flickr8k.token.txt@Flicker8k_Dataset#test
    python -m export evaluate --model runs/coco/model.pt --data karpathy:dataset_coco.json@coco#test

A run is named by its precision, with `_beamK` for beam search ("int8_beam3"). For a bundle with
a confidence calibration, each greedy run also reports how often captions above and below the
threshold are right (per-caption CIDEr-D at least the bundle's `confidence.right`), and for a
bundle with a kinds table, the CIDEr of its captions reconciled with the objects channel
(runtime/channels/compose.py) beside the plain captions'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.datasets import Sample, read_dataset
from runtime import ROOT
from runtime.errors import InputError
from runtime.model import metrics
from runtime.model.metrics import caption_scores
from runtime.model.preprocess import read_image
from runtime.model.vocab import normalize


@dataclass(frozen=True)
class EvalConfig:
    data: str  # dataset spec with references (export/datasets.py); the first caption is canonical
    model: str = "models/default"  # a bundle folder, or a .pt checkpoint for torch
    precisions: str = "fp32,fp16,int8"  # bundle precisions to run, compared with the first
    beam: str = "1"  # beam sizes for the bundle's captions, a comma list (1: greedy)
    n: int = 0  # first n images only (0: all)
    out: str | None = None  # write every caption and the scores to this JSON file


def score(captions: list[str], samples: list[Sample], meteor: bool = True) -> dict[str, float]:
    scores = caption_scores(captions, [list(s.captions) for s in samples], meteor)
    if scores is None:
        raise InputError(
            "evaluation needs pycocoevalcap (pip install -c requirements/constraints.txt "
            "-e '.[train]')"
        )
    exact = np.mean([c == normalize(s.captions[0]) for c, s in zip(captions, samples)])
    return {"exact_match": float(exact), **scores}


def _bundle_captions(bundle, precision: str, samples: list[Sample], beam: int = 1) -> list:
    """The runtime's Caption (text, confidence, ImageNet logits) of every sample."""
    from runtime.model.captioner import Captioner

    cap = Captioner(bundle, precision, beam_size=beam)
    what = precision + (f" beam {beam}" if beam > 1 else "")
    return [
        cap.caption(read_image(s.image))
        for s in tqdm(samples, desc=f"captioning {what}", unit="img")
    ]


def per_caption_cider(captions: list[str], samples: list[Sample]) -> np.ndarray:
    """CIDEr-D of each caption against its sample's references."""
    scores = metrics.per_caption_cider(captions, [list(s.captions) for s in samples])
    if scores is None:
        raise InputError(
            "evaluation needs pycocoevalcap (pip install -c requirements/constraints.txt "
            "-e '.[train]')"
        )
    return np.asarray(scores, dtype=np.float64)


def confidence_split(results: list, samples: list[Sample], calibration: dict) -> dict:
    """How often captions at or above the confidence threshold are right, against those below."""
    cider = per_caption_cider([r.text for r in results], samples)
    right = cider >= calibration.get("right", 0.5)
    conf = np.array([-1.0 if r.confidence is None else r.confidence for r in results])
    above = conf >= calibration["threshold"]
    part = lambda m: {
        "captions": int(m.sum()),
        "right": float(right[m].mean()) if m.any() else None,
        "mean_cider": float(cider[m].mean()) if m.any() else None,
    }
    return {
        "threshold": calibration["threshold"],
        "right_if_cider_at_least": calibration.get("right", 0.5),
        "above": part(above),
        "below": part(~above),
    }


def reconciled(results: list, bundle) -> tuple[list[str], int]:
    """Captions as the composer says them beside the objects channel, and how many changed."""
    from runtime.channels.base import Context, Findings, Sentence, Setup
    from runtime.channels.compose import compose
    from runtime.channels.objects import ObjectsChannel

    objects = ObjectsChannel(Setup(bundle, has_objects=True))
    out = [
        compose(
            [
                Findings("caption", sentence=Sentence(r.text, None, None)),
                objects.run(None, Context(r)),
            ],
            bundle.kinds,
        ).caption
        for r in results
    ]
    return out, sum(a != r.text for a, r in zip(out, results))


def _checkpoint_captions(path: str, samples: list[Sample]) -> list[str]:
    import torch

    from export.torch_backend import TorchStepModel
    from export.train import greedy_captions, load_checkpoint
    from runtime.model.preprocess import preprocess

    model, vocab, ckpt = load_checkpoint(path)
    step = TorchStepModel(model)
    out = []
    for s in tqdm(samples, desc="captioning torch", unit="img"):
        with torch.no_grad():
            fmap = model.backbone.region_features(torch.from_numpy(preprocess(read_image(s.image))))
        out += greedy_captions(step, fmap.numpy(), vocab, ckpt["train"]["max_len"])
    return out


def _beams(spec: str) -> list[int]:
    try:
        beams = [int(b) for b in str(spec).split(",") if b.strip()]
    except ValueError:
        beams = []
    if not beams or not all(1 <= b <= 16 for b in beams):
        raise InputError(f"--beam {spec!r}: give beam sizes 1..16 as a comma list, e.g. 1,3")
    return beams


def evaluate(cfg: EvalConfig) -> dict:
    samples = read_dataset(cfg.data)
    samples = samples[: cfg.n] if cfg.n else samples
    extra: dict[str, dict] = {}
    if cfg.model.endswith(".pt"):
        runs = {"torch": _checkpoint_captions(cfg.model, samples)}
    else:
        from runtime.model.bundle import load_bundle

        bundle = load_bundle(cfg.model)
        runs = {}
        for beam in _beams(cfg.beam):
            for p in cfg.precisions.split(","):
                name = p + (f"_beam{beam}" if beam > 1 else "")
                results = _bundle_captions(bundle, p, samples, beam)
                runs[name] = [r.text for r in results]
                extra[name] = {"dropped_degenerate": sum(bool(r.dropped) for r in results)}
                if bundle.confidence and beam == 1:
                    extra[name]["confidence"] = confidence_split(
                        results, samples, bundle.confidence
                    )
                if (
                    bundle.kinds
                    and beam == 1
                    and results
                    and results[0].imagenet_logits is not None
                ):
                    texts, changed = reconciled(results, bundle)
                    extra[name]["reconciled"] = {
                        "changed": changed,
                        "cider": score(texts, samples, meteor=False)["cider"],
                    }
    first = next(iter(runs.values()))
    report = {}
    for name, caps in runs.items():
        report[name] = score(caps, samples)
        report[name]["agreement_vs_" + next(iter(runs))] = float(
            np.mean([a == b for a, b in zip(caps, first)])
        )
        report[name].update(extra.get(name, {}))
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        # a shared data set's photos and captions are not ours to copy: its rows hold the photo's
        # file name and our captions only
        rows = [
            {"image": s.image.name, **{name: caps[i] for name, caps in runs.items()}}
            if _shared(s.image)
            else {
                "image": str(s.image),
                "references": list(s.captions),
                **{name: caps[i] for name, caps in runs.items()},
            }
            for i, s in enumerate(samples)
        ]
        Path(cfg.out).write_text(
            json.dumps({"data": cfg.data, "scores": report, "captions": rows}, indent=1)
        )
    return report


def _shared(path: Path) -> bool:
    """A photo of a data set outside the repository (Flickr8k under ../shared): the report
    names it by file name only, so that a report committed into a bundle copies none of it."""
    return not path.resolve().is_relative_to(ROOT)

"""Evaluate captions against references: exact match with the first (canonical) caption, and
BLEU-1..4, METEOR (where Java is present), ROUGE-L and CIDEr from pycocoevalcap, for a bundle
through the runtime at any precision and beam size, or for a torch checkpoint.

    python -m export evaluate --model models/default --data data/scenes-test --precisions fp32,int8
    python -m export evaluate --model runs/coco/model.pt --data karpathy:dataset_coco.json@coco#test
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.datasets import Sample, read_dataset
from export.features import load_image
from runtime.errors import InputError
from runtime.metrics import caption_scores
from runtime.vocab import normalize


@dataclass(frozen=True)
class EvalConfig:
    data: str  # dataset spec with references (export/datasets.py); the first caption is canonical
    model: str = "models/default"  # a bundle folder, or a .pt checkpoint for torch
    precisions: str = "fp32,fp16,int8"  # bundle precisions to run, compared with the first
    beam: int = 1  # beam size for the bundle's captions (1: greedy)
    n: int = 0  # first n images only (0: all)
    out: str | None = None  # write every caption and the scores to this JSON file


def score(captions: list[str], samples: list[Sample], meteor: bool = True) -> dict[str, float]:
    scores = caption_scores(captions, [list(s.captions) for s in samples], meteor)
    if scores is None:
        raise InputError("evaluation needs pycocoevalcap (pip install -r requirements/train.txt)")
    exact = np.mean([c == normalize(s.captions[0]) for c, s in zip(captions, samples)])
    return {"exact_match": float(exact), **scores}


def _bundle_captions(model: str, precision: str, samples: list[Sample], beam: int = 1) -> list[str]:
    from runtime.bundle import load_bundle
    from runtime.captioner import Captioner

    cap = Captioner(load_bundle(model), precision, beam_size=beam)
    return [cap.caption(load_image(s.image)).text
            for s in tqdm(samples, desc=f"captioning {precision}", unit="img")]


def _checkpoint_captions(path: str, samples: list[Sample]) -> list[str]:
    import torch

    from export.torch_backend import TorchStepModel
    from export.train import greedy_captions, load_checkpoint
    from runtime.preprocess import preprocess

    model, vocab, ckpt = load_checkpoint(path)
    step = TorchStepModel(model)
    out = []
    for s in tqdm(samples, desc="captioning torch", unit="img"):
        with torch.no_grad():
            fmap = model.backbone.region_features(torch.from_numpy(preprocess(load_image(s.image))))
        out += greedy_captions(step, fmap.numpy(), vocab, ckpt["train"]["max_len"])
    return out


def evaluate(cfg: EvalConfig) -> dict:
    samples = read_dataset(cfg.data)
    samples = samples[: cfg.n] if cfg.n else samples
    runs = ({"torch": _checkpoint_captions(cfg.model, samples)} if cfg.model.endswith(".pt") else
            {p: _bundle_captions(cfg.model, p, samples, cfg.beam) for p in cfg.precisions.split(",")})
    first = next(iter(runs.values()))
    report = {}
    for name, caps in runs.items():
        report[name] = score(caps, samples)
        report[name]["agreement_vs_" + next(iter(runs))] = float(np.mean([a == b for a, b in zip(caps, first)]))
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        rows = [{"image": str(s.image), "references": list(s.captions),
                 **{name: caps[i] for name, caps in runs.items()}} for i, s in enumerate(samples)]
        Path(cfg.out).write_text(json.dumps({"scores": report, "captions": rows}, indent=1))
    return report

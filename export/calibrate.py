"""Calibrate a bundle's caption confidence on validation photos (never the test list).

    python -m export calibrate --model models/default \
        --data flickr8k:../shared/datasets/flickr8k/Flickr8k.token.txt@Flicker8k_Dataset#dev

Each validation photo is captioned through the runtime (greedy, at `--precision`) and its
caption marked right when its CIDEr-D against the photo's own references is at least
`--right`. A logistic curve of the caption's mean token log-probability is fitted to those
marks (Newton's method), so that the confidence reads as the chance of a right caption. The
threshold is the lowest confidence at which the captions at or above it are right at least
`--min-right` of the time on these photos. The manifest's "confidence" block is rewritten;
the graphs and their hashes are not touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.datasets import read_dataset
from export.evaluate import _bundle_captions, per_caption_cider
from runtime.errors import InputError
from runtime.model.bundle import load_bundle
from runtime.model.confidence import calibrated
from runtime.model.io_spec import MANIFEST


@dataclass(frozen=True)
class CalibrateConfig:
    data: str  # validation dataset spec with references (not the test list)
    model: str = "models/default"  # the bundle whose manifest gets the calibration
    precision: str = "int8"  # the precision captioned (int8 is the CPU default)
    right: float = 0.5  # a caption is right when its CIDEr-D is at least this
    min_right: float = 0.5  # the threshold: least share right among captions at or above it
    n: int = 0  # first n photos only (0: all)


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(slope, intercept) of P(y=1 | x) = sigmoid(slope * x + intercept), by Newton's method
    with a tiny ridge so that separable data still gives finite numbers."""
    X = np.stack([x, np.ones_like(x)], axis=1).astype(np.float64)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -50, 50)))
        grad = X.T @ (p - y) + 1e-6 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def choose_threshold(conf: np.ndarray, right: np.ndarray, min_right: float) -> float:
    """The lowest confidence whose captions at or above it are right >= min_right of the time."""
    order = np.argsort(-conf, kind="stable")
    share = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(share >= min_right)[0]
    if not len(ok):
        return 1.0  # never right enough: every caption is hedged
    return float(conf[order][ok[-1]])


def calibrate(cfg: CalibrateConfig) -> dict:
    bundle = load_bundle(cfg.model)
    if bundle.synthetic:
        raise InputError(
            f"{cfg.model}: a synthetic-scenes bundle is calibrated by exact match, "
            "not here (its captions are not hedged)"
        )
    samples = read_dataset(cfg.data)
    samples = samples[: cfg.n] if cfg.n else samples
    results = _bundle_captions(bundle, cfg.precision, samples)
    logprob = np.array([-50.0 if r.dropped else r.logprob for r in results], dtype=np.float64)
    right = (per_caption_cider([r.text for r in results], samples) >= cfg.right).astype(np.float64)
    slope, intercept = fit_logistic(logprob, right)
    conf = np.array([calibrated(lp, {"slope": slope, "intercept": intercept}) for lp in logprob])
    threshold = choose_threshold(conf, right, cfg.min_right)
    above = conf >= threshold
    block = {
        "slope": slope,
        "intercept": intercept,
        "threshold": round(threshold, 4),
        "right": cfg.right,
        "measure": f"per-caption CIDEr-D >= {cfg.right}",
        "fitted_on": {
            "data": cfg.data,
            "photos": len(samples),
            "precision": cfg.precision,
            "right": float(right.mean()),
            "above_threshold": int(above.sum()),
            "right_above": float(right[above].mean()) if above.any() else None,
            "right_below": float(right[~above].mean()) if (~above).any() else None,
        },
    }
    path = Path(cfg.model) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["confidence"] = block
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    load_bundle(cfg.model)  # the block it wrote must load
    return block

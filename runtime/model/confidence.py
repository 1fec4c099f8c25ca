"""Caption confidence: how likely a caption is to be right, from how sure the decoder was.

The decoder's mean token log-probability (eos included) is mapped through a logistic curve
fitted on the bundle's validation photos (`python -m export calibrate`), so that 0.8 means
that about 80% of such captions were "right enough" there (the bundle's `confidence.measure`).
A caption under the bundle's `confidence.threshold` is said as "maybe ..." after the objects
(runtime.channels.compose).
"""

from __future__ import annotations

import math


def calibrated(logprob: float | None, calibration: dict | None) -> float | None:
    """Mean token log-probability -> confidence in 0..1: calibrated where the bundle has a
    calibration, else the geometric mean of the token probabilities (exp of the mean), which
    ranks captions the same way but is not a chance of being right. None without a log-prob."""
    if logprob is None or not math.isfinite(logprob):
        return None
    if calibration is None:
        return math.exp(min(logprob, 0.0))
    z = calibration["slope"] * logprob + calibration["intercept"]
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

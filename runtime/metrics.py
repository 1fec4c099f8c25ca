"""Caption metrics shared by evaluation (export/) and the benchmark (runtime/).

BLEU comes from pycocoevalcap, the implementation caption papers report; it is a training
extra, so `bleu()` returns None where it is not installed.
"""

from __future__ import annotations

from runtime.vocab import normalize


def bleu(captions: list[str], references: list[list[str]]) -> list[float] | None:
    """Corpus BLEU-1..4 of captions against their references (normalised), or None."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
    except ImportError:
        return None
    refs = {i: [normalize(c) for c in r] for i, r in enumerate(references)}
    hyps = {i: [c] for i, c in enumerate(captions)}
    scores, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    return [float(s) for s in scores]

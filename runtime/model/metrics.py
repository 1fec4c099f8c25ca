"""Caption metrics shared by evaluation (export/) and the benchmark (runtime/).

All come from pycocoevalcap, the implementation caption papers report: BLEU-1..4, METEOR (its
Java jar, where Java is installed), ROUGE-L and CIDEr-D. It is a training extra, so these return
None where it is not installed. Captions and references are normalised the way the runtime
detokenises (lower case, words only) instead of the Stanford PTB tokenizer, so no Java is needed
for the rest.
"""

from __future__ import annotations

import shutil

from runtime.model.vocab import normalize


def _inputs(captions: list[str], references: list[list[str]]):
    refs = {i: [normalize(c) for c in r] for i, r in enumerate(references)}
    hyps = {i: [normalize(c)] for i, c in enumerate(captions)}
    return refs, hyps


def _bleu(refs: dict, hyps: dict) -> list[float]:
    from pycocoevalcap.bleu.bleu import Bleu

    return [float(s) for s in Bleu(4).compute_score(refs, hyps, verbose=0)[0]]


def bleu(captions: list[str], references: list[list[str]]) -> list[float] | None:
    """Corpus BLEU-1..4 of captions against their references (normalised), or None."""
    try:
        return _bleu(*_inputs(captions, references))
    except ImportError:
        return None


def per_caption_cider(captions: list[str], references: list[list[str]]) -> list[float] | None:
    """CIDEr-D of each caption against its own references (the corpus gives the IDF), or None."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return None
    return [float(s) for s in Cider().compute_score(*_inputs(captions, references))[1]]


def caption_scores(
    captions: list[str], references: list[list[str]], meteor: bool = True
) -> dict | None:
    """{"bleu1".."bleu4", "rouge_l", "cider", and "meteor" where Java is present}, or None."""
    try:
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return None
    refs, hyps = _inputs(captions, references)
    out = {f"bleu{i + 1}": b for i, b in enumerate(_bleu(refs, hyps))}
    out["rouge_l"] = float(Rouge().compute_score(refs, hyps)[0])
    out["cider"] = float(Cider().compute_score(refs, hyps)[0])
    if meteor and shutil.which("java"):
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()  # a Java subprocess, stopped when the scorer is collected
        out["meteor"] = float(scorer.compute_score(refs, hyps)[0])
        del scorer
    return out

"""Acceptance figures of the default bundle on 200 scenes from a seed never used in training:
fp32 exact canonical captions >= 90% (the shipped bundle measures 93.5%), BLEU-4 >= 0.90 (0.964),
fp16 and int8 equal to fp32 on >= 97% (100% and 98.5%)."""

import json

import pytest
from conftest import MODEL, run_cli

from runtime.model.vocab import normalize

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def captions(test_scenes):
    rows = [json.loads(l) for l in (test_scenes / "captions.jsonl").read_text().splitlines()]
    images = [str(test_scenes / r["image"]) for r in rows]
    out = {}
    for precision in ("fp32", "fp16", "int8"):
        r = run_cli(
            "runtime", "caption", *images, "--precision", precision, "--json", "--model", str(MODEL)
        )
        assert r.returncode == 0, r.stderr
        got = [json.loads(l) for l in r.stdout.splitlines()]
        assert [g["image"] for g in got] == images
        out[precision] = [g["caption"] for g in got]
    return rows, out


def _exact(captions) -> float:
    rows, out = captions
    # exact after normalising case and punctuation, which the vocabulary does not model
    return sum(c == normalize(r["captions"][0]) for c, r in zip(out["fp32"], rows)) / len(rows)


def test_fp32_gives_the_canonical_caption_for_90_percent(captions):
    assert _exact(captions) >= 0.90, f"exact match {_exact(captions):.3f}"


def test_fp32_bleu4_is_at_least_0_90(captions):
    pytest.importorskip("pycocoevalcap")
    from export.datasets import Sample
    from export.evaluate import score

    rows, out = captions
    samples = [Sample(r["image"], tuple(r["captions"])) for r in rows]
    assert score(out["fp32"], samples)["bleu4"] >= 0.90


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precisions_agree_with_fp32(captions, precision):
    _, out = captions
    same = sum(a == b for a, b in zip(out[precision], out["fp32"])) / len(out["fp32"])
    assert same >= 0.97, f"{precision} agrees with fp32 on {same:.3f}"

"""Beam search through the bundle's decoder-step graph, against greedy on held-out scenes."""

import json

import pytest
from conftest import MODEL, run_cli

from export.datasets import read_jsonl
from export.evaluate import score
from runtime.model.bundle import load_bundle
from runtime.model.captioner import Captioner
from runtime.model.preprocess import read_image

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def held_out(test_scenes):
    samples = read_jsonl(test_scenes)
    return samples, [read_image(s.image) for s in samples]


def test_beam_3_scores_at_least_as_well_as_greedy(held_out):
    samples, images = held_out
    bundle = load_bundle(MODEL)
    greedy = Captioner(bundle, "fp32")
    beam = Captioner(bundle, "fp32", beam_size=3)
    g = score([greedy.caption(i).text for i in images], samples)
    b = score([beam.caption(i).text for i in images], samples)
    print(
        f"\ngreedy: exact {g['exact_match']:.3f} BLEU-4 {g['bleu4']:.4f}; "
        f"beam 3: exact {b['exact_match']:.3f} BLEU-4 {b['bleu4']:.4f}"
    )
    assert b["bleu4"] >= g["bleu4"] and b["exact_match"] >= g["exact_match"]


def test_caption_cli_takes_beam(held_out, tmp_path):
    samples, _ = held_out
    r = run_cli(
        "runtime", "caption", str(samples[0].image), "--beam", "3", "--json", "--model", str(MODEL)
    )
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["steps"] >= 3 and row["caption"].split()[0] in ("a", "two", "three")
    bad = run_cli("runtime", "caption", str(samples[0].image), "--beam", "0", "--model", str(MODEL))
    assert (
        bad.returncode == 2 and bad.stderr.strip() == "error: --beam 0: use 1 (greedy) to 16 beams"
    )

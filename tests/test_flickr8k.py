"""Flickr8k as it really is: the reader on a tiny copy of the original file's quirks, written
here, and the shipped real-photo bundle scored on the real test list where ../shared has it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import ROOT

from export.datasets import read_dataset
from runtime.errors import InputError

pytestmark = pytest.mark.unit

FLICKR8K = ROOT.parent / "shared" / "datasets" / "flickr8k"


@pytest.fixture()
def quirky(tmp_path):
    """A token file with the original's quirks: line 1 separated by a space, five lines for a
    name with no photo, a one-word caption and the trailing " ." of every caption."""
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / "photos" / name), np.full((32, 32, 3), 99, np.uint8))
    lines = [
        "a.jpg#0 A child in a pink dress is climbing up a set of stairs .",
        "a.jpg#1\tA girl going into a wooden building .",
        "a.jpg#2\tA\n".rstrip("\n"),
        *[f"gone.jpg.1#{k}\tSome people waiting for the subway ." for k in range(5)],
        "b.jpg#0\tTwo dogs play in the snow .",
        "b.jpg#1\tdogs racing",
    ]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("a.jpg\ngone.jpg.1\nb.jpg\n")
    return tmp_path


def test_the_original_quirks_are_read_and_summed_up_in_one_line(quirky, capsys):
    samples = read_dataset(f"flickr8k:{quirky}/Flickr8k.token.txt@photos#train")
    got = {s.image.name: s.captions for s in samples}
    assert got == {
        "a.jpg": (
            "A child in a pink dress is climbing up a set of stairs",
            "A girl going into a wooden building",
        ),
        "b.jpg": ("Two dogs play in the snow", "dogs racing"),
    }
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "note: Flickr8k.token.txt: skipped 5 caption lines of 1 names with no photo "
        "and 1 one-word captions"
    ]


def test_a_file_that_is_not_flickr8k_is_one_clear_error(tmp_path):
    bad = tmp_path / "Flickr8k.token.txt"
    bad.write_text("hello world\nthis is not a caption file\n")
    with pytest.raises(InputError, match=r"Flickr8k.token.txt:1: not a Flickr8k token line"):
        read_dataset(f"flickr8k:{bad}")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not a readable Flickr8k token file"):
        read_dataset(f"flickr8k:{binary}")


def test_a_wrong_photo_folder_is_still_named(quirky):
    with pytest.raises(InputError, match=r"3 of 3 images are missing.*is the images folder right"):
        read_dataset(f"flickr8k:{quirky}/Flickr8k.token.txt@nowhere#train")


needs_flickr8k = pytest.mark.skipif(
    not (FLICKR8K / "Flickr8k.token.txt").is_file(),
    reason=f"{FLICKR8K}: Flickr8k is not on this machine (read its README)",
)


@needs_flickr8k
def test_the_real_file_reads_the_three_lists():
    spec = f"flickr8k:{FLICKR8K}/Flickr8k.token.txt@Flicker8k_Dataset"
    sizes = {split: len(read_dataset(f"{spec}#{split}")) for split in ("train", "dev", "test")}
    assert sizes == {"train": 6000, "dev": 1000, "test": 1000}


@pytest.mark.system
@needs_flickr8k
@pytest.mark.slow
def test_the_default_bundle_on_the_real_test_list(tmp_path):
    """The shipped bundle's int8 greedy captions of the 1,000 test photos: within 5% of the
    Flickr8k-only model before it (CIDEr 0.453, BLEU-4 0.177; tests/test_bundle.py holds
    evaluation.json to its bars) and no caption that babbles or ends on a dangling word."""
    from export.evaluate import EvalConfig, evaluate
    from runtime.model.decoding import degenerate

    spec = f"flickr8k:{FLICKR8K}/Flickr8k.token.txt@Flicker8k_Dataset#test"
    out = tmp_path / "e.json"
    report = evaluate(
        EvalConfig(
            data=spec, model=str(ROOT / "models" / "default"), precisions="int8", out=str(out)
        )
    )
    assert report["int8"]["cider"] >= 0.95 * 0.453 and report["int8"]["bleu4"] >= 0.95 * 0.177
    captions = [row["int8"] for row in json.loads(out.read_text())["captions"]]
    assert len(captions) == 1000 and all(captions)
    assert [c for c in captions if degenerate(c)] == []

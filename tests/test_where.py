"""Where things are: the ImageNet head's class activation map over the encoder's 7x7 map
(runtime/model/where.py), read from the graph the runtime already runs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import REAL_MODEL, ROOT, run_cli

pytestmark = pytest.mark.unit

CAT = ROOT / "assets" / "photos" / "chelsea.jpg"


def _wide_frame_with_the_cat(side: str) -> np.ndarray:
    """A 16:9 frame, grey, with the cat photo in its left or right third."""
    frame = np.full((720, 1280, 3), 128, np.uint8)
    cat = cv2.resize(cv2.imread(str(CAT)), (420, 420))
    x0 = 0 if side == "left" else 1280 - 420
    frame[150:570, x0 : x0 + 420] = cat
    return frame


@pytest.mark.system
@pytest.mark.parametrize("precision", ["int8", "fp32", "fp16"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_the_cat_is_placed_on_its_side_of_a_wide_frame(tmp_path, side, precision):
    path = tmp_path / f"{side}.png"
    cv2.imwrite(str(path), _wide_frame_with_the_cat(side))
    r = run_cli(
        "runtime",
        "caption",
        str(path),
        "--json",
        "--precision",
        precision,
        "--model",
        str(REAL_MODEL),
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    top = out["objects"][0]
    assert top["name"] == "cat" and top["where"] == side, out["objects"]
    assert f"I see a cat on your {side}" in out["description"]


@pytest.mark.system
def test_clock_positions(tmp_path):
    path = tmp_path / "left.png"
    cv2.imwrite(str(path), _wide_frame_with_the_cat("left"))
    r = run_cli("runtime", "caption", str(path), "--where", "clock", "--model", str(REAL_MODEL))
    assert r.returncode == 0, r.stderr
    assert "I see a cat at 10 o'clock" in r.stdout


def test_the_map_comes_from_the_graph_itself():
    """The map the head pools and the head's weights are found in the bundle's own graphs; a
    graph edited to output the map computes the same logits as before."""
    import onnxruntime as ort

    from runtime.model import io_spec
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner
    from runtime.model.preprocess import preprocess

    bundle = load_bundle(REAL_MODEL)
    cap = Captioner(bundle, "int8")
    assert cap.locator is not None and cap.locator.weight.shape == (1000, 1280)
    blob = preprocess(cv2.imread(str(CAT)), bundle.preprocess)
    plain = ort.InferenceSession(
        str(bundle.graph_paths("int8")[io_spec.ENCODER]), providers=["CPUExecutionProvider"]
    )
    want = plain.run([io_spec.OBJECTS], {"image": blob})[0]
    got = dict(zip(cap.encoder_outputs, cap.encoder.run(cap.encoder_outputs, {"image": blob})))
    assert np.array_equal(got[io_spec.OBJECTS], want)
    fmap = got[cap.map_output][0]
    assert fmap.shape == (1280, 7, 7)
    # the head is linear after the pool: the pooled map through its weights gives its logits
    pooled = cap.locator.weight @ fmap.reshape(1280, -1).mean(axis=1)
    assert np.corrcoef(pooled, want[0])[0, 1] > 0.99

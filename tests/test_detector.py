"""runtime/model/detector.py: preprocessing, GFL decoding and NMS on hand-built tensors, the
shipped NanoDet-g graphs (fp32 and int8) on the committed photos, and the checks of the detector
folder's manifest and files."""

import json
import shutil

import cv2
import numpy as np
import pytest
from conftest import ROOT

from runtime.errors import BundleError
from runtime.model.detector import (
    DEFAULT,
    Detection,
    Detector,
    Letterbox,
    decode_gfl,
    iou,
    load_detector,
    load_detector_bundle,
    nms,
    preprocess,
)
from runtime.model.session import SessionConfig

pytestmark = pytest.mark.unit

DETECTOR = ROOT / "models" / "detector"
SPEC = json.loads((DETECTOR / "manifest.json").read_text())
PHOTOS = ROOT / "assets" / "photos"
ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}


def photo(name: str) -> np.ndarray:
    return cv2.imread(str(PHOTOS / f"{name}.jpg"))


# -- preprocessing -------------------------------------------------------------------------------


def test_preprocess_gives_the_normalised_nchw_input():
    frame = np.full((300, 500, 3), 200, np.uint8)
    x, _ = preprocess(frame, SPEC)
    assert x.shape == (1, 3, 416, 416) and x.dtype == np.float32 and x.flags.c_contiguous
    mean, std = np.array(SPEC["mean"]), np.array(SPEC["std"])
    assert np.allclose(x[0, :, 208, 208], (200 - mean) / std, atol=1e-5)  # the frame, BGR
    assert np.allclose(x[0, :, 0, 208], -mean / std, atol=1e-5)  # the black band above it


def test_preprocess_keeps_channel_order_bgr_and_accepts_grey_and_bgra():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[..., 0] = 255  # blue
    x, _ = preprocess(frame, SPEC)
    assert x[0, 0, 200, 200] > 2 and x[0, 2, 200, 200] < -2  # channel 0 is blue
    assert preprocess(np.zeros((50, 80), np.uint8), SPEC)[0].shape == (1, 3, 416, 416)
    assert preprocess(np.zeros((50, 80, 4), np.uint8), SPEC)[0].shape == (1, 3, 416, 416)


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_a_box_in_the_input_maps_back_onto_the_frame(resize):
    """A white rectangle in a wide frame, found in the network input, maps back to itself."""
    frame = np.zeros((240, 640, 3), np.uint8)
    frame[60:180, 400:560] = 255
    x, placed = preprocess(frame, {**SPEC, "resize": resize})
    ys, xs = np.nonzero(x[0, 0] > 0)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    assert np.allclose(placed.to_frame(found, frame.shape[:2]), [[400, 60, 560, 180]], atol=2)
    if resize == "letterbox":  # 640 wide -> 416: scale 0.65, 156 rows high, centred
        assert placed == Letterbox(416 / 640, 156 / 240, 0, 130)


def test_boxes_are_clipped_to_the_frame():
    placed = Letterbox(1.0, 1.0, 0.0, 10.0)
    out = placed.to_frame(np.array([[-5, 0, 120, 500]], np.float32), (100, 100))
    assert out.tolist() == [[0, 0, 100, 100]]


# -- decoding ------------------------------------------------------------------------------------


def heads(peaks: dict, bins: int = 11):
    """Empty (N,80) scores and flat (N,44) distance logits for strides 8, 16, 32 at 416; peaks:
    {(stride, row, col, class): (score, (left, top, right, bottom) in strides)}."""
    scores = [np.zeros(((416 // s) ** 2, 80), np.float32) for s in (8, 16, 32)]
    dists = [np.zeros(((416 // s) ** 2, 4 * bins), np.float32) for s in (8, 16, 32)]
    for (stride, row, col, cls), (score, sides) in peaks.items():
        level, cell = (8, 16, 32).index(stride), row * (416 // stride) + col
        scores[level][cell, cls] = score
        for side, d in enumerate(sides):
            dists[level][cell, side * bins + d] = 40.0  # softmax ~ one-hot at bin d
    return scores, dists


def test_a_peak_decodes_to_its_box_and_class():
    scores, dists = heads({(8, 10, 20, 41): (0.9, (2, 3, 4, 5))})
    boxes, kept, classes = decode_gfl(scores, dists, [8, 16, 32], (416, 416), 0.3)
    cx, cy = 20.5 * 8, 10.5 * 8  # the cell's centre
    assert classes.tolist() == [41] and np.allclose(kept, [0.9])
    assert np.allclose(boxes, [[cx - 16, cy - 24, cx + 32, cy + 40]], atol=1e-3)


def test_distances_are_the_expectation_over_the_bins():
    scores, dists = heads({(32, 6, 6, 0): (0.8, (0, 0, 0, 0))})
    dists[2][6 * 13 + 6] = 0.0  # flat logits: every bin 0..10 equally likely, mean 5
    boxes, _, _ = decode_gfl(scores, dists, [8, 16, 32], (416, 416), 0.3)
    c = 6.5 * 32
    assert np.allclose(boxes, [[c - 160, c - 160, c + 160, c + 160]], atol=1e-3)


def test_decoding_keeps_only_scores_at_the_threshold_best_first():
    scores, dists = heads(
        {
            (8, 1, 1, 0): (0.5, (1, 1, 1, 1)),
            (16, 2, 2, 15): (0.7, (1, 1, 1, 1)),
            (32, 3, 3, 16): (0.29, (1, 1, 1, 1)),
        }
    )
    _, kept, classes = decode_gfl(scores, dists, [8, 16, 32], (416, 416), 0.3)
    assert classes.tolist() == [15, 0] and np.allclose(kept, [0.7, 0.5])
    assert len(decode_gfl(scores, dists, [8, 16, 32], (416, 416), 0.95)[0]) == 0


def test_nms_removes_a_duplicate_of_the_same_class_only():
    boxes = np.array(
        [[0, 0, 100, 100], [5, 5, 100, 100], [5, 5, 100, 100], [200, 0, 300, 100]], np.float32
    )
    scores = np.array([0.6, 0.9, 0.8, 0.5], np.float32)
    classes = np.array([0, 0, 15, 0])
    assert nms(boxes, scores, classes, 0.6).tolist() == [1, 2, 3]  # box 0 is box 1's duplicate
    assert iou(boxes[0], boxes[1:2])[0] > 0.6


# -- the shipped graphs on the committed photos --------------------------------------------------


@pytest.fixture(scope="module", params=["fp32", "int8"])
def detector(request) -> Detector:
    return load_detector(load_detector_bundle(), request.param, SessionConfig(intra_op_threads=1))


def names(found: list[Detection]) -> list[str]:
    return [d.name for d in found]


def box_iou(a, b) -> float:
    return float(iou(np.array(a, np.float32), np.array([b], np.float32))[0])


def test_the_astronaut_is_a_person_boxed_on_her(detector):
    found = detector.detect(photo("astronaut"))
    assert found[0].name == "person" and found[0].score > 0.6
    assert box_iou(found[0].box, (0, 10, 370, 512)) > 0.8  # she fills the left 70%


def test_chelsea_is_a_cat_and_no_dog_at_the_fact_threshold(detector):
    found = detector.detect(photo("chelsea"))
    assert found[0].name == "cat"
    assert names(detector.detect(photo("chelsea"), 0.5)) == ["cat"]


def test_the_coffee_photo_has_a_cup_where_the_cup_is(detector):
    found = detector.detect(photo("coffee"), 0.25)
    assert "person" not in names(found) and not ANIMALS & set(names(found))
    cups = [d.box for d in found if d.name == "cup"]
    centred = [
        b
        for b in cups
        if 200 < (b[0] + b[2]) / 2 < 390
        and 60 < (b[1] + b[3]) / 2 < 230
        and (b[2] - b[0]) * (b[3] - b[1]) < 0.4 * 600 * 400
    ]
    assert centred, cups


def test_the_cameraman_is_a_person_on_the_left(detector):
    found = detector.detect(photo("camera"))
    assert found[0].name == "person" and found[0].score > 0.8
    x0, y0, x1, y1 = found[0].box
    assert x0 < 20 and (x0 + x1) / 2 < 256 and y1 > 480


def test_the_rocket_launch_names_nothing(detector):
    assert detector.detect(photo("rocket"), 0.3) == []


def test_detections_are_sorted_and_inside_the_frame(detector):
    frame = photo("camera")[:300]  # a non-square frame
    found = detector.detect(frame, 0.2)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    h, w = frame.shape[:2]
    assert all(0 <= d.box[0] <= d.box[2] <= w and 0 <= d.box[1] <= d.box[3] <= h for d in found)
    assert all(d.name in SPEC["classes"] for d in found)


# -- the bundle's files --------------------------------------------------------------------------


def _copy(tmp_path, *files: str, spec=None):
    """A detector folder with the shipped manifest (or `spec`) and copies of these files."""
    (tmp_path / "manifest.json").write_text(json.dumps(spec or SPEC))
    for name in files:
        shutil.copy(DETECTOR / name, tmp_path)
    return tmp_path


def test_a_damaged_detector_file_is_refused(tmp_path):
    path = _copy(tmp_path, "detector.int8.onnx") / "detector.int8.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="detector.int8.onnx: sha256 mismatch"):
        load_detector(load_detector_bundle(tmp_path), "int8", SessionConfig())


def test_a_missing_file_is_named_and_a_missing_precision_falls_back(tmp_path):
    with pytest.raises(BundleError, match="detector.fp32.onnx: detector file missing"):
        load_detector(load_detector_bundle(_copy(tmp_path)), "fp32", SessionConfig())
    # a GPU profile's fp16: the detector has fp32 and int8, and runs fp32
    assert load_detector(load_detector_bundle(), "fp16", SessionConfig()).precision == "fp32"
    assert DEFAULT == DETECTOR
    with pytest.raises(BundleError, match="no detector here"):
        load_detector_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"strides": None}, "missing key 'strides'"),
        ({"threshold": "high"}, "'threshold' has the wrong type"),
        ({"threshold": 1.5}, r"threshold must be a number in \(0, 1\]"),
        ({"input": [416]}, "input must be 2 numbers"),
        ({"resize": "crop"}, "resize must be one of letterbox, stretch"),
        ({"thresholds": {"unicorn": 0.5}}, "thresholds must map its classes"),
        ({"format": "scenespeak-bundle/1"}, "not a SceneSpeak detector"),
        ({"files": {"int8": {"path": "../../etc/hostname", "sha256": "0" * 64}}}, "points outside"),
        ({"files": {}}, "lists no graph"),
    ],
)
def test_a_bad_detector_manifest_is_one_line_at_load(tmp_path, change, error):
    spec = {k: v for k, v in {**SPEC, **change}.items() if v is not None}
    with pytest.raises(BundleError, match=error):
        load_detector_bundle(_copy(tmp_path, spec=spec))


def test_a_broken_detector_is_one_line_from_the_cli(tmp_path):
    """The CLI builds the detector channel before the first image: a bad manifest there is
    one `error:` line and exit 2 (as DetectorChannel reads it through load_detector_bundle)."""
    from runtime.channels.base import Setup
    from runtime.channels.detector import DetectorChannel, usable
    from runtime.model.bundle import load_bundle

    _copy(tmp_path, spec={**SPEC, "threshold": "high"})
    setup = Setup(load_bundle(ROOT / "models" / "default"), detector=tmp_path)
    assert usable(setup) is None
    with pytest.raises(BundleError, match="'threshold' has the wrong type"):
        DetectorChannel(setup)
    assert "no detector here" in usable(Setup(setup.bundle, detector=tmp_path / "nowhere"))

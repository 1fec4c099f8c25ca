"""ONNX Runtime sessions: providers with their options, threads and graph optimisation in one
place. Which providers a board gets comes from its device profile (runtime/app/profiles.py).

onnxruntime is imported when a session is first made, so options are checked (and help
shown) without loading it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BundleError
from runtime.options import check, number

CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
MAX_THREADS = 64  # an AGX Orin has 12 cores; more threads than cores only slow ONNX Runtime


@dataclass(frozen=True)
class SessionConfig:
    providers: tuple[tuple[str, dict], ...] = ((CPU, {}),)  # (name, options) by preference
    intra_op_threads: int = 0  # the encoder's; 0: auto, every core this process may use (see
    # auto_threads()). The decoder step always runs on one (see runtime.model.captioner.Captioner).
    optimization: str = "all"  # graph optimisation level: disable, basic, extended, all
    io_binding: str = "auto"  # decoder state kept on the session's device between steps:
    # auto (on for GPU providers, where it saves a host round trip per token), on, off
    stop_spinning: bool = True  # the encoder's pool threads stop spinning as soon as a run
    # returns instead of 40-50 ms later, a core's worth of CPU after every frame
    # (docs/performance.md): a camera loop between frames, and the speech, leave the cores idle

    def __post_init__(self):
        check(
            self,
            "intra_op_threads",
            number(self.intra_op_threads, int) and 0 <= self.intra_op_threads <= MAX_THREADS,
            f"use 0 (auto) to {MAX_THREADS} threads",
        )
        check(
            self,
            "optimization",
            self.optimization in _LEVELS,
            f"choose one of {', '.join(_LEVELS)}",
        )
        check(
            self, "io_binding", self.io_binding in ("auto", "on", "off"), "choose auto, on or off"
        )

    @property
    def gpu(self) -> bool:
        return any(name in GPU_PROVIDERS for name, _ in self.providers)


_LEVELS = {  # name -> onnxruntime.GraphOptimizationLevel's
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def onnxruntime():
    """The onnxruntime module, its telemetry off: the environment (runtime/__init__.py) did it
    already; this holds where onnxruntime came in first."""
    import onnxruntime as ort

    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


def usable_providers(wanted: tuple[tuple[str, dict], ...]) -> list[tuple[str, dict]]:
    """The wanted providers this onnxruntime offers, in order, always ending with CPU."""
    have = set(onnxruntime().get_available_providers())
    chosen = [(n, o) for n, o in wanted if n in have and n != CPU]
    return chosen + [next(((n, o) for n, o in wanted if n == CPU), (CPU, {}))]


def default_precision(precisions: tuple[str, ...], gpu: bool, preferred: str | None = None) -> str:
    """The fastest precision on offer: the profile's on a GPU provider (fp16), int8 on the CPU,
    where fp16 is slower than fp32."""
    order = ((preferred,) if gpu and preferred else ()) + (("fp16", "int8") if gpu else ("int8",))
    for p in order + ("fp32", "fp16"):
        if p in precisions:
            return p
    raise BundleError("the bundle has no graphs")


def auto_threads() -> int:
    """Every core this process may use, for the encoder. On the 2-core development machine two
    encoder threads with a one-thread decoder step caption int8 in 5.1 ms against 6.6 ms with
    one encoder thread; giving the decoder step two threads as well (two spinning pools on two
    cores) more than doubles it, 14.0 ms."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def cache_root() -> Path:
    """Where compiled engines are kept (TensorRT's, per model and precision, and the text
    channel's): $SCENESPEAK_CACHE, else $XDG_CACHE_HOME/scenespeak or ~/.cache/scenespeak."""
    base = os.environ.get("SCENESPEAK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scenespeak"
    )
    return Path(base)


def _options(options: dict) -> dict[str, str]:
    """Provider options as the strings ONNX Runtime parses ("1"/"0" for booleans)."""
    return {k: ("1" if v else "0") if isinstance(v, bool) else str(v) for k, v in options.items()}


def create_session(path: Path, cfg: SessionConfig = SessionConfig(), model: bytes | None = None):
    """An onnxruntime.InferenceSession of the graph at `path`, or of `model` (that graph's
    bytes, edited), whose external weights are then read from beside `path`."""
    ort = onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.intra_op_threads or auto_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[cfg.optimization])
    so.log_severity_level = 3
    if cfg.stop_spinning:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    providers = usable_providers(cfg.providers)
    if model is not None:
        so.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(Path(path).parent)
        )
    try:
        return ort.InferenceSession(
            model if model is not None else str(path),
            so,
            providers=[n for n, _ in providers],
            provider_options=[_options(o) for _, o in providers],
        )
    except Exception as e:  # ORT raises its own untyped errors for bad models
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({first[:200]})") from None

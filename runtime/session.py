"""ONNX Runtime sessions: provider choice, threads and graph optimisation in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from runtime.errors import BundleError

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class SessionConfig:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # in order of preference
    intra_op_threads: int = 0  # 0: auto, half the cores (at least 1); see auto_threads()
    optimization: str = "all"  # graph optimisation level: disable, basic, extended, all


_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def available_providers(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The wanted providers this onnxruntime offers, in order, always ending with CPU."""
    have = set(ort.get_available_providers())
    chosen = tuple(p for p in wanted if p in have and p != "CPUExecutionProvider")
    return chosen + ("CPUExecutionProvider",)


def default_precision(precisions: tuple[str, ...], providers: tuple[str, ...]) -> str:
    """The fastest precision on offer: fp16 on a GPU provider, int8 on CPU, else fp32."""
    gpu = any(p in GPU_PROVIDERS for p in providers)
    for p in (("fp16", "int8") if gpu else ("int8",)) + ("fp32", "fp16"):
        if p in precisions:
            return p
    raise BundleError("the bundle has no graphs")


def auto_threads() -> int:
    """Half the cores: on a 2-core laptop one intra-op thread captions twice as fast as two
    (measured with `bench --threads 1` vs `--threads 2`), and capture and speech keep a core."""
    return max(1, (os.cpu_count() or 2) // 2)


def create_session(path: Path, cfg: SessionConfig = SessionConfig()) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.intra_op_threads or auto_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = _LEVELS[cfg.optimization]
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=list(available_providers(cfg.providers)))
    except Exception as e:  # ORT raises its own untyped errors for bad models
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({first[:200]})") from None

"""Shared fixtures: the shapes and default bundles, held-out scenes rendered on the fly, the CLI
runner, and each test's tier (unit, system, slow)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the synthetic-scenes bundle: the deterministic fixture of the exact-caption and loop tests
MODEL = Path(os.environ.get("SCENESPEAK_TEST_MODEL", ROOT / "models" / "shapes"))
REAL_MODEL = ROOT / "models" / "default"  # the shipped real-photo bundle (Flickr8k)
TEST_SEED = 7  # never used in training (train 1, val 2, clip 11)

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # as runtime/__init__.py does, for tests that load
# onnxruntime before it (and for their subprocesses)

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="training extras (torch) not installed")

# Every test is in a tier (pyproject.toml's markers): unit, or system, and slow on top of system.
# A module's `pytestmark` tier is the default of its tests; a test's own `unit` or `system`
# marker replaces it and `slow` adds to it. What is not so is listed here (test_tiers.py).
TIERS = ("unit", "system", "slow")
TIER_PROBLEMS = pytest.StashKey[list]()


def tier_problem(tiers: set[str]) -> str | None:
    """What is wrong with a test's set of tier markers, or None."""
    if not tiers:
        return "no tier (mark it unit, system, or system and slow)"
    if {"unit", "system"} <= tiers:
        return "both unit and system"
    if "slow" in tiers and "system" not in tiers:
        return "slow but not system"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects on the markers settled here
def pytest_collection_modifyitems(config, items):
    modules = set()
    for item in items:
        module = item.getparent(pytest.Module)
        own: set[str] = set()
        for node in reversed(item.listchain()):  # the test, its class: up to the module
            if node is module:
                break
            own |= {m.name for m in node.own_markers if m.name in TIERS}
        if module is not None:
            modules.add(module)
            if not own & {"unit", "system"}:
                for mark in module.own_markers:
                    if mark.name in TIERS and mark.name not in own:
                        item.add_marker(mark.name)
    for module in modules:  # now on each test: a test's own tier is no longer added to
        module.own_markers[:] = [m for m in module.own_markers if m.name not in TIERS]
    problems = []
    for item in items:
        problem = tier_problem({m.name for m in item.iter_markers() if m.name in TIERS})
        if problem:
            problems.append(f"{item.nodeid}: {problem}")
    config.stash[TIER_PROBLEMS] = problems


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, module: bool = True, **kw):
    """`python -m <args>` (or `python <args>`) from the repository root; the CompletedProcess."""
    argv = [sys.executable, *(["-m"] if module else []), *args]
    return subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kw,
    )


class Voice:
    """A speech worker that only remembers what it was asked to say (DescribeLoop in-process)."""

    def __init__(self):
        self.said: list[str] = []

    def say(self, text, kind="caption", frame=-1, interrupt=False, t_capture=None):
        self.said.append(text)

    def wait_idle(self, timeout):
        return True

    def close(self):
        pass


def channels_of(model, channel: str = "caption", precision: str = "int8", **opts):
    """The ChannelSet describe builds for `model` with these channels (runtime.app.assemble)."""
    from runtime.app.assemble import ChannelOptions, ModelOptions, captioner, channel_set

    cap, where = captioner(ModelOptions(model=str(model), precision=precision))
    return channel_set(cap, where, ChannelOptions(channel=channel, **opts))


def write_clip(path: Path, frames, fps: float = 10) -> Path:
    """An MPEG-4 clip of these BGR frames, in order, at `fps`."""
    import cv2

    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        out.write(frame)
    out.release()
    return path


def read_events(path: Path) -> list[dict]:
    """A describe log's lines as dicts."""
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="session")
def three_scene_clip(tmp_path_factory) -> Path:
    """A real video of three held-out scenes (seed 7), 1.5 s each at 15 fps, with its .jsonl."""
    from export.scenes import write_clip

    out = tmp_path_factory.mktemp("clip") / "three.mp4"
    write_clip(out, scenes=3, seed=7, seconds=1.5, fps=15)
    return out


@pytest.fixture(scope="session")
def test_scenes(tmp_path_factory) -> Path:
    """200 held-out scenes (seed 7) written as PNGs plus captions.jsonl."""
    from export.scenes import write_scenes  # needs opencv/numpy/tqdm only

    out = tmp_path_factory.mktemp("scenes-seed7")
    write_scenes(out, 200, TEST_SEED)
    return out

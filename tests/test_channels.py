"""The channel interface: a channel is one class and one registry line, and the describe loop
and the composer speak what it finds without knowing it. Here a toy channel that says how
bright the frame is, fast (every frame) and slow (the background worker, once per scene)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import MODEL, ROOT, Voice, channels_of

from runtime.channels.base import Context, Findings, Setup

pytestmark = pytest.mark.unit


class Brightness:
    """The frame's mean brightness, in words."""

    name, slow, key = "brightness", False, "b"

    def __init__(self, setup: Setup):
        pass

    def run(self, frame: np.ndarray, context: Context) -> Findings:
        level = float(frame.mean())
        said = "it is bright" if level > 128 else "it is dark"
        return Findings(self.name, said=said, key=(said,), report={"brightness": round(level, 1)})


class SlowBrightness(Brightness):
    name, slow = "slow_brightness", True

    def run(self, frame, context):
        time.sleep(0.2)  # slower than a frame: the loop must not wait for it to read the next
        return super().run(frame, context)


@pytest.fixture
def registry(monkeypatch):
    from runtime.channels import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    registry.register("brightness", Brightness)  # the one line a new channel adds
    registry.register("slow_brightness", SlowBrightness)
    return registry


def _loop(channel: str, mode: str = "continuous"):
    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig

    voice, events = Voice(), []
    loop = DescribeLoop(
        channels_of(MODEL, channel),
        None,
        voice,
        EventLog(None, echo=events.append),
        LoopConfig(mode=mode),
    )
    return loop, voice, events


def test_a_new_channel_is_heard_without_touching_the_loop_or_the_composer(registry):
    from runtime.app.sources import Frame

    loop, voice, events = _loop("brightness")
    loop.on_frame(Frame(np.full((120, 160, 3), 230, np.uint8), 0, time.monotonic()))
    loop.on_frame(Frame(np.full((120, 160, 3), 20, np.uint8), 1, time.monotonic()))
    assert voice.said == ["it is bright", "it is dark"]
    captions = [e for e in events if e["event"] == "caption"]
    assert [e["brightness"] for e in captions] == [230.0, 20.0]  # its report reaches the log
    # its key, in manual mode, runs it alone on the frame at hand
    loop, voice, _ = _loop("caption,slow_brightness", "manual")
    loop.on_key("b", Frame(np.full((120, 160, 3), 230, np.uint8), 0, time.monotonic()))
    loop.slow.close()
    assert voice.said == ["it is bright"]


def test_a_slow_channel_runs_in_the_worker_and_joins_the_description(registry):
    from runtime.app.sources import Frame

    loop, voice, events = _loop("caption,slow_brightness", "change")
    t0 = time.monotonic()
    loop.on_frame(Frame(np.full((120, 160, 3), 230, np.uint8), 0, t0))
    loop.on_frame(Frame(np.full((120, 160, 3), 230, np.uint8), 1, t0))
    assert time.monotonic() - t0 < 0.2 and voice.said == []  # capture never waited for it
    deadline = time.monotonic() + 5
    while not voice.said and time.monotonic() < deadline:
        loop.slow.release()
        time.sleep(0.01)
    loop.slow.close()
    caption = [e for e in events if e["event"] == "caption"][0]["caption"]
    assert voice.said == [f"{caption}. it is bright"]
    slow = [e for e in events if e["event"] == "slow_brightness"]
    assert slow and slow[0]["brightness"] == 230.0 and slow[0]["ms"] >= 200


def test_the_loop_and_the_composer_import_no_channel():
    """They know the interface (base), the registry and the composer, never a channel; the
    registry names each channel once."""
    from test_layout import imports

    channels = {"caption", "objects", "detector", "text"}
    for path in (
        ROOT / "runtime" / "app" / "loop.py",
        ROOT / "runtime" / "app" / "worker.py",
        ROOT / "runtime" / "channels" / "compose.py",
    ):
        named = {m.split(".")[2] for m in imports(path) if m.startswith("runtime.channels.")}
        assert not named & channels, (path.name, named & channels)
    registry = (ROOT / "runtime" / "channels" / "registry.py").read_text()
    assert all(registry.count(f'"runtime.channels.{n}:') == 1 for n in channels)


class Broken(Brightness):
    name = "broken"

    def run(self, frame, context):
        raise RuntimeError("boom")


def _settle(loop, voice, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(voice.said) < n and time.monotonic() < deadline:
        loop.slow.release()
        time.sleep(0.01)


@pytest.mark.system  # a slow channel's worker on four scenes: about 3 s
def test_only_slow_channels_in_change_mode_speak_each_new_scene(registry):
    """With no fast channel, the fast findings cannot tell scenes apart: the policy decides
    on the whole description, so a new scene is said, and an unchanged one is not."""
    from runtime.app.sources import Frame

    loop, voice, events = _loop("slow_brightness", "change")
    for i, level in enumerate((230, 230, 20, 20)):
        loop.on_frame(Frame(np.full((120, 160, 3), level, np.uint8), i, time.monotonic()))
        _settle(loop, voice, len(voice.said) + 1, timeout=1.0)
    loop.slow.close()
    assert voice.said == ["it is bright", "it is dark"]
    assert len([e for e in events if e["event"] == "slow_brightness"]) == 4  # each job once


def test_a_failing_channel_is_warned_of_once_and_the_others_speak(registry):
    from runtime.app.sources import Frame

    registry.register("broken", Broken)
    loop, voice, events = _loop("brightness,broken")
    for i in range(3):
        loop.on_frame(Frame(np.full((120, 160, 3), 230, np.uint8), i, time.monotonic()))
    assert voice.said == ["it is bright"] * 3
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings == ["broken channel failed on a frame (RuntimeError: boom)"]


def test_a_key_answer_never_stands_in_for_a_scene(registry):
    """Enter holds a description for the scene's slow findings; "b" then asks the slow
    channel alone about another frame. Each is said with its own frame's findings."""
    from runtime.app.sources import Frame

    loop, voice, _ = _loop("caption,slow_brightness", "manual")
    loop.on_key("\n", Frame(np.full((120, 160, 3), 230, np.uint8), 0, time.monotonic()))
    loop.on_key("b", Frame(np.full((120, 160, 3), 20, np.uint8), 1, time.monotonic()))
    _settle(loop, voice, 2)
    loop.slow.close()
    assert voice.said[0] == "it is dark"  # the key's answer, at once
    assert voice.said[1].endswith("it is bright"), voice.said  # the scene, with its own findings

"""The channel interface: a channel is one class and one registry line, and the describe loop
and the composer speak what it finds without knowing it. Here a toy channel that says how
bright the frame is, fast (every frame) and slow (the background worker, once per scene)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import MODEL, ROOT
from runtime.channels.base import Context, Findings, Setup


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


class Voice:
    def __init__(self):
        self.said = []

    def say(self, text, kind="caption", frame=-1, interrupt=False, t_capture=None):
        self.said.append(text)

    def wait_idle(self, timeout):
        return True


def _loop(channel: str, mode: str = "continuous"):
    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner

    voice, events = Voice(), []
    loop = DescribeLoop(Captioner(load_bundle(MODEL), "int8"), None, voice,
                        EventLog(None, echo=events.append), LoopConfig(mode=mode, channel=channel))
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
    loop.worker.close()
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
        loop._release()
        time.sleep(0.01)
    loop.worker.close()
    caption = [e for e in events if e["event"] == "caption"][0]["caption"]
    assert voice.said == [f"{caption}. it is bright"]
    slow = [e for e in events if e["event"] == "slow_brightness"]
    assert slow and slow[0]["brightness"] == 230.0 and slow[0]["ms"] >= 200


def test_the_loop_and_the_composer_import_no_channel():
    """They know the interface (base), the registry and the composer, never a channel; the
    registry names each channel once."""
    from test_layout import imports

    channels = {"caption", "objects", "detector", "text"}
    for path in (ROOT / "runtime" / "app" / "loop.py", ROOT / "runtime" / "app" / "worker.py",
                 ROOT / "runtime" / "channels" / "compose.py"):
        named = {m.split(".")[2] for m in imports(path) if m.startswith("runtime.channels.")}
        assert not named & channels, (path.name, named & channels)
    registry = (ROOT / "runtime" / "channels" / "registry.py").read_text()
    assert all(registry.count(f'"runtime.channels.{n}:') == 1 for n in channels)

"""The light channel (runtime/channels/light.py): dark, dim and bright frames made from a real
photo, where a light is, and a clip whose lights go off, said once."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from conftest import REAL_MODEL, ROOT, Voice, channels_of, read_events, run_cli, write_clip

from runtime.channels.base import Context
from runtime.channels.light import LightChannel, LightMeter, spoken

pytestmark = pytest.mark.unit

PHOTO = ROOT / "assets" / "photos" / "astronaut.jpg"


def exposed(gain: float, seed: int = 0) -> np.ndarray:
    """The photo as a camera gives it with `gain` times the light, with its sensor noise."""
    frame = cv2.resize(cv2.imread(str(PHOTO)), (640, 480)).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 2.5, frame.shape)
    return np.clip(frame * gain + noise, 0, 255).astype(np.uint8)


def test_dark_dim_and_bright_frames_are_told_apart():
    meter = LightMeter()
    levels = [meter.measure(exposed(g), remember=False).level for g in (0.08, 0.45, 1.0, 1.4)]
    assert levels == ["dark", "dim", "bright", "bright"]


def test_a_window_on_the_right_is_said_where_it_is():
    room = exposed(0.4)
    room[60:300, 470:620] = 250  # a bright window in the right third
    light = LightMeter().measure(room)
    assert (light.level, light.brightest) == ("dim", "right")
    assert spoken(light) == "dim, bright light on your right"
    assert spoken(light, "clock") == "dim, bright light at 2 o'clock"
    assert LightMeter().measure(exposed(0.4)).brightest is None  # an even room has no light


def test_lights_off_is_said_when_the_light_falls_and_kept_while_it_stays_dark():
    channel = LightChannel(None)
    said = [
        channel.run(exposed(g, i), Context()).said
        for i, g in enumerate((1.0, 1.0, 0.05, 0.05, 0.05, 1.0))
    ]
    assert said == [
        "bright",
        "bright",
        "lights off",
        "lights off",
        "lights off",
        "lights on, bright",
    ]
    slow = LightChannel(None)  # dusk: the light falls a little at a time
    said = [slow.run(exposed(g), Context()).said for g in (0.6, 0.4, 0.25, 0.15, 0.1, 0.07, 0.05)]
    assert "lights off" not in said and said[-1] == "dark"
    key = LightChannel(None)  # a key's look says the level now, and is not the last frame seen
    key.run(exposed(1.0), Context())
    assert key.run(exposed(0.05), Context(everything=True)).said == "dark"
    assert key.run(exposed(0.05), Context()).said == "lights off"


@pytest.mark.system
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_a_clip_whose_lights_go_off_says_lights_off_exactly_once(tmp_path):
    """3 s lit, 4 s with the lights off (the sensor's noise still moving pixels), in change mode."""
    path = write_clip(
        tmp_path / "off.mp4", [exposed(1.0 if i < 30 else 0.05, i) for i in range(70)]
    )
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(path),
        "--channel",
        "light",
        "--no-speak",
        "--log",
        str(log),
        "--model",
        str(REAL_MODEL),
    )
    assert r.returncode == 0, r.stderr
    events = read_events(log)
    said = [e["caption"] for e in events if e["event"] == "spoken" and e["kind"] == "caption"]
    assert said.count("lights off") == 1 and said[0] == "bright", said
    lights = [e["light"] for e in events if e["event"] == "caption"]
    assert {l["level"] for l in lights} == {"bright", "dark"} and all("mean" in l for l in lights)


def test_manual_keys_say_the_light_and_the_colour_with_those_channels_off():
    """ "l" and "c" in manual mode answer for the frame at hand whichever channels are on."""
    import time

    from conftest import MODEL

    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig
    from runtime.app.sources import Frame

    voice, events = Voice(), []
    loop = DescribeLoop(
        channels_of(MODEL, "caption"),
        None,
        voice,
        EventLog(None, echo=events.append),
        LoopConfig(mode="manual"),
    )
    assert loop.channels.names == ("caption",)
    loop.on_key("l", Frame(exposed(0.05), 0, time.monotonic()))
    loop.on_key("c", Frame(np.full((480, 640, 3), (40, 40, 200), np.uint8), 1, time.monotonic()))
    assert voice.said == ["dark", "mostly red"]
    assert [e["key"] for e in events if e["event"] == "key"] == ["light", "colour"]

"""The speech worker: the real espeak-ng voice, and engine doubles that are slow or fail."""

import shutil
import threading
import time
import wave

import numpy as np
import pytest

from runtime.app.speech import SpeechConfig, SpeechWorker

pytestmark = pytest.mark.unit


class Events:
    def __init__(self):
        self.rows, self.lock = [], threading.Lock()

    def __call__(self, name, **fields):
        with self.lock:
            self.rows.append((name, fields))

    def spoken(self):
        return [f["caption"] for n, f in self.rows if n == "spoken"]

    def warnings(self):
        return [f["message"] for n, f in self.rows if n == "warning"]


class SlowEngine:
    """Test double: takes `seconds` to render each utterance (one second of silence)."""

    voice = "double"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def render(self, text: str) -> bytes:
        time.sleep(self.seconds)
        return b"\0\0" * 22050


@pytest.mark.system
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_voice_is_recorded_to_one_wav(tmp_path):
    events = Events()
    wav = tmp_path / "speech.wav"
    w = SpeechWorker(SpeechConfig(record=str(wav), play=False), events)
    w.say("a small red circle in the top left", kind="notice")
    w.say("two large blue squares", kind="notice")
    w.close()
    assert events.spoken() == ["a small red circle in the top left", "two large blue squares"]
    with wave.open(str(wav)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16)
        rate = f.getframerate()
    assert 2.0 < len(pcm) / rate < 8.0  # two short sentences at 175 words per minute
    assert np.abs(pcm).max() > 3000
    assert w.voice  # the engine names its voice


def test_slow_engine_never_blocks_and_only_the_newest_caption_is_spoken():
    events = Events()
    w = SpeechWorker(SpeechConfig(play=False), events, engine_factory=lambda cfg: SlowEngine(1.0))
    start = time.monotonic()
    w.say("first scene")
    time.sleep(0.1)  # the worker is now rendering "first scene"
    for i in range(2, 7):
        w.say(f"scene {i}")
    assert time.monotonic() - start < 0.3  # say() returns at once
    w.close(timeout=10)
    assert events.spoken() == ["first scene", "scene 6"]


def test_notices_are_kept_in_order_while_captions_are_replaced():
    events = Events()
    w = SpeechWorker(SpeechConfig(play=False), events, engine_factory=lambda cfg: SlowEngine(0.3))
    w.say("busy")
    time.sleep(0.05)
    w.say("old caption")
    w.say("camera lost", kind="notice")
    w.say("new caption")
    w.say("camera back", kind="notice")
    w.close(timeout=10)
    assert events.spoken() == ["busy", "camera lost", "new caption", "camera back"]


def counting_factory(engine_class):
    """An engine factory that makes instant `engine_class` engines; the list counts them."""
    made = []

    def factory(cfg):
        made.append(1)
        return engine_class(0.0)

    return factory, made


def test_engine_that_fails_is_restarted():
    events = Events()

    class Flaky(SlowEngine):
        def render(self, text):
            if text == "crash":
                raise RuntimeError("driver died")
            return super().render(text)

    factory, made = counting_factory(Flaky)
    w = SpeechWorker(SpeechConfig(play=False), events, engine_factory=factory)
    w.say("crash", kind="notice")
    w.say("after the crash", kind="notice")
    w.close()
    assert events.spoken() == ["after the crash"]  # "crash" failed on a fresh engine too
    assert any("driver died" in m for m in events.warnings()) and len(made) == 3


def test_engine_that_dies_mid_utterance_is_restarted_and_the_utterance_kept():
    """The driver dies while rendering "camera lost": that notice still reaches the user."""
    events = Events()

    class DiesOnce(SlowEngine):
        def render(self, text):
            if len(made) == 1:
                raise OSError("espeak-ng: connection to the audio driver lost")
            return super().render(text)

    factory, made = counting_factory(DiesOnce)
    w = SpeechWorker(SpeechConfig(play=False), events, engine_factory=factory)
    w.say("camera lost", kind="notice")
    w.say("a small red star", kind="caption")
    w.close()
    assert events.spoken() == ["camera lost", "a small red star"] and len(made) == 2
    assert len(events.warnings()) == 1 and "restarting it" in events.warnings()[0]


def test_missing_engine_warns_once_and_never_raises():
    events = Events()

    def factory(cfg):
        raise OSError("libespeak-ng.so.1: cannot open shared object file")

    w = SpeechWorker(SpeechConfig(play=False), events, engine_factory=factory)
    for i in range(3):
        w.say(f"caption {i}")
    w.close()
    assert events.spoken() == []
    assert len(events.warnings()) == 1 and "speech unavailable" in events.warnings()[0]

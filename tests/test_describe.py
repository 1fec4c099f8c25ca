"""`python -m runtime describe` on a real video file with the real espeak-ng voice."""

import json
import shutil
import wave

import numpy as np
import pytest
from conftest import MODEL, read_events, run_cli

from runtime.model.vocab import normalize

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]


@pytest.fixture(scope="module")
def clip(three_scene_clip):
    return three_scene_clip


@pytest.fixture(scope="module")
def run(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("describe")
    r = run_cli(
        "runtime",
        "describe",
        str(clip),
        "--no-speak",
        "--speech-wav",
        str(out / "s.wav"),
        "--log",
        str(out / "log.jsonl"),
        "--model",
        str(MODEL),
        timeout=120,
    )
    events = read_events(out / "log.jsonl")
    return r, events, out / "s.wav"


def test_each_scene_is_spoken_once_with_its_canonical_caption(run, clip):
    r, events, _ = run
    assert r.returncode == 0, r.stderr
    truth = [
        normalize(json.loads(l)["caption"])
        for l in clip.with_suffix(".jsonl").read_text().splitlines()
    ]
    spoken = [e["caption"] for e in events if e["event"] == "spoken" and e["kind"] == "caption"]
    assert len(spoken) == len(truth)
    assert sum(a == b for a, b in zip(spoken, truth)) >= 2, (spoken, truth)
    assert all(a != b for a, b in zip(spoken, spoken[1:]))  # never twice in a row


def test_log_lines_are_complete_and_end_last(run):
    _, events, _ = run
    assert events[-1]["event"] == "end" and events[-1]["frames"] >= 60
    assert all({"t", "frame", "event"} <= set(e) for e in events)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    caps = [e for e in events if e["event"] == "caption"]
    assert caps and all(
        e["latency_ms"]["capture_to_caption"] >= e["latency_ms"]["total"] for e in caps
    )
    notices = [e["caption"] for e in events if e["event"] == "spoken" and e["kind"] == "notice"]
    assert notices[0] == "SceneSpeak ready" and notices[-1] == "SceneSpeak stopped"


def test_speech_wav_holds_every_utterance(run):
    _, events, wav = run
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    seconds = len(pcm) / 22050
    n = sum(e["event"] == "spoken" for e in events)
    assert seconds > 0.4 * n  # espeak-ng says even "SceneSpeak ready" in well over 0.4 s
    assert np.abs(pcm).max() > 3000  # a voice, not silence


def test_a_folder_skips_a_fifo_and_an_image_bomb_and_describes_the_rest(tmp_path):
    """A FIFO named like an image would block a reader forever, and a header that claims
    100000x100000 pixels would make OpenCV raise: both are `skipped` with their reason, and
    the stills around them are described."""
    import os

    import cv2
    from test_caption_cli import _png_header_only

    from export.scenes import make_scene

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in ((0, "a.png"), (1, "d.png")):
        cv2.imwrite(str(folder / name), make_scene(7, i)[0])
    os.mkfifo(folder / "b.png")
    _png_header_only(folder / "c.png", 100000, 100000)
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(folder),
        "--no-speak",
        "--log",
        str(log),
        "--model",
        str(MODEL),
        timeout=120,
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    events = [json.loads(l) for l in log.read_text().splitlines()]
    skipped = {e["frame"]: e["reason"] for e in events if e["event"] == "skipped"}
    assert skipped == {
        1: "b.png: not a regular file (a FIFO or device), skipped",
        2: "c.png: 100000x100000 pixels is over the 50-megapixel limit for an image",
    }
    assert sorted(e["frame"] for e in events if e["event"] == "caption") == [0, 3]
    assert events[-1]["event"] == "end"

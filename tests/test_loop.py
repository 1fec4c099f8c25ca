"""The describe loop end to end: real video files, a real MJPEG stream on 127.0.0.1, real
ONNX Runtime captioning; the speech engine is the real espeak-ng except where a slow double
stands in to prove that speech never stalls capture."""

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import MODEL, ROOT, channels_of, read_events
from mjpeg_server import MjpegServer

from export.scenes import make_scene, write_clip
from runtime.model.vocab import normalize

pytestmark = pytest.mark.system


def _describe(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", "describe", *args, "--model", str(MODEL)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _still_clip(path, seconds: float, fps: int, seed: int = 7, index: int = 3):
    img = make_scene(seed, index)[0]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, img.shape[1::-1])
    rng = np.random.default_rng(0)
    for _ in range(int(seconds * fps)):
        w.write(np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def scene_clip(tmp_path_factory):
    """Twenty held-out scenes (seed 7), each shown for 2 s at 15 fps."""
    return write_clip(
        tmp_path_factory.mktemp("clip") / "scenes.mp4", scenes=20, seed=7, seconds=2.0, fps=15
    )


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """Six held-out scenes, 2 s each."""
    return write_clip(
        tmp_path_factory.mktemp("short") / "scenes.mp4", scenes=6, seed=7, seconds=2.0, fps=15
    )


@pytest.fixture(scope="module")
def change_run(scene_clip, tmp_path_factory):
    log = tmp_path_factory.mktemp("change") / "log.jsonl"
    p = _describe(str(scene_clip), "--no-speak", "--log", str(log))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return read_events(log)


def _spoken_per_scene(change_run, scene_clip):
    truth = [json.loads(l) for l in scene_clip.with_suffix(".jsonl").read_text().splitlines()]
    starts = [t["frame"] for t in truth] + [10**9]
    spoken = [e for e in change_run if e["event"] == "spoken" and e["kind"] == "caption"]
    return [
        (normalize(t["caption"]), [e["caption"] for e in spoken if lo <= e["frame"] < hi])
        for t, lo, hi in zip(truth, starts, starts[1:])
    ]


def test_change_mode_speaks_each_scene_exactly_once(change_run, scene_clip):
    per_scene = _spoken_per_scene(change_run, scene_clip)
    assert [len(said) for _, said in per_scene] == [1] * len(per_scene), per_scene
    texts = [said[0] for _, said in per_scene]
    assert all(a != b for a, b in zip(texts, texts[1:]))  # never twice in a row


def test_change_mode_speaks_the_canonical_caption_for_90_percent(change_run, scene_clip):
    per_scene = _spoken_per_scene(change_run, scene_clip)
    right = sum(said[:1] == [truth] for truth, said in per_scene)
    print(f"canonical spoken captions on MPEG-4 frames: {right} of {len(per_scene)}")
    assert right >= 0.9 * len(per_scene), per_scene


@pytest.mark.slow
def test_scene_change_to_speech_start(change_run, scene_clip):
    """Figures for the closing note: from the first frame of a new scene to its speech."""
    truth = [json.loads(l) for l in scene_clip.with_suffix(".jsonl").read_text().splitlines()]
    starts = [t["frame"] for t in truth] + [10**9]
    caps = [e for e in change_run if e["event"] == "caption"]
    spoken = [e for e in change_run if e["event"] == "spoken" and e["kind"] == "caption"]
    latencies = []
    for lo, hi in zip(starts, starts[1:]):
        said = [e for e in spoken if lo <= e["frame"] < hi]
        assert said, f"scene starting at frame {lo} was never spoken"
        first = next(e for e in caps if e["frame"] >= lo)
        t_change = first["t"] - first["latency_ms"]["capture_to_caption"] / 1e3
        latencies.append((said[0]["t"] - t_change) * 1e3)
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"scene change to speech start: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert p95 <= 400


def test_static_scene_skips_the_encoder_and_idles(tmp_path):
    clip = _still_clip(tmp_path / "still.mp4", seconds=12, fps=30)
    log = tmp_path / "log.jsonl"
    p = _describe(str(clip), "--no-speak", "--log", str(log))
    time.sleep(4)  # start-up and the first captions are not idle time

    def cpu_s():
        fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / __import__("os").sysconf("SC_CLK_TCK")

    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(6)
    share = (cpu_s() - c0) / (time.monotonic() - t0)
    p.communicate(timeout=60)
    events = read_events(log)
    captions = sum(e["event"] == "caption" for e in events)
    frames = events[-1]["frames"]
    print(f"static scene: {share:.1%} of one core, {captions} captions for {frames} frames")
    assert frames >= 0.9 * 12 * 30 and captions <= 3
    assert share < 0.15


def test_stream_loss_is_announced_and_the_loop_goes_on(tmp_path):
    server = MjpegServer([make_scene(7, 5)[0]], fps=15).start()
    log = tmp_path / "log.jsonl"
    p = _describe(server.url, "--no-speak", "--log", str(log))
    try:
        time.sleep(5)
        server.stop()
        time.sleep(3)
        server.start()
        time.sleep(6)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        server.stop()
    assert p.returncode == 0, err
    events = read_events(log)
    names = [e["event"] for e in events]
    assert names.count("source_lost") == 1 and names.count("source_restored") == 1
    lost, back = names.index("source_lost"), names.index("source_restored")
    assert lost < back
    assert "caption" in names[:lost] and any(e["event"] == "caption" for e in events[back:])
    spoken = [e["caption"] for e in events if e["event"] == "spoken"]
    assert spoken.count("camera lost") == 1 and "camera back" in spoken
    # the camera came back on the same scene: it is described afresh, not taken as said
    said = [e["caption"] for e in events if e["event"] == "spoken" and e["kind"] == "caption"]
    before = [
        e["caption"] for e in events[:lost] if e["event"] == "spoken" and e["kind"] == "caption"
    ]
    after = [
        e["caption"] for e in events[back:] if e["event"] == "spoken" and e["kind"] == "caption"
    ]
    assert before and after and after[0] == before[-1], said
    assert names[-1] == "end"
    assert "Traceback" not in err


def test_slow_speech_never_stalls_capture(short_clip):
    """A TTS double taking 3 s per utterance; frames are still read at the source rate."""
    from runtime.app.eventlog import EventLog
    from runtime.app.loop import DescribeLoop, LoopConfig
    from runtime.app.sources import SourceConfig, open_source
    from runtime.app.speech import SpeechConfig, SpeechWorker

    class ThreeSecondEngine:
        voice = "double"

        def render(self, text):
            time.sleep(3.0)
            return b"\0\0" * 2205

    rows = []
    log = EventLog(None, echo=rows.append)
    speech = SpeechWorker(
        SpeechConfig(play=False),
        lambda name, **kw: log.write(name, kw.pop("source_frame", -1), **kw),
        engine_factory=lambda cfg: ThreeSecondEngine(),
    )
    source = open_source(str(short_clip), SourceConfig(realtime=True))
    loop = DescribeLoop(channels_of(MODEL), source, speech, log, LoopConfig(mode="change"))
    start = time.monotonic()
    loop.run()
    frames = rows[-1]["frames"]
    total = 6 * 2.0 * 15
    spoken = [r["caption"] for r in rows if r["event"] == "spoken" and r["kind"] == "caption"]
    captions = [r["caption"] for r in rows if r["event"] == "caption"]
    # the clip plays in real time (12 s) and every frame is read at 15 fps, though speech
    # can say only one utterance in 3 s: stale captions are dropped, not queued
    assert frames >= 0.9 * total
    assert len(spoken) <= 12 / 3 + 1
    assert spoken and spoken[-1] == captions[-1]  # what is said last is the newest scene
    assert time.monotonic() - start < 12 + 3 * 3 + 10


def test_manual_mode_keys_from_a_terminal_without_a_window(short_clip, tmp_path):
    log = tmp_path / "log.jsonl"
    p = _describe(
        str(short_clip), "--mode", "manual", "--no-speak", "--log", str(log), stdin=subprocess.PIPE
    )
    for key, pause in (("\n", 3.0), ("r", 1.0), ("q", 1.0)):
        time.sleep(pause)
        p.stdin.write(key)
        p.stdin.flush()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    events = read_events(log)
    assert [e["key"] for e in events if e["event"] == "key"] == ["describe", "repeat", "quit"]
    described = [e for e in events if e["event"] == "caption"]
    assert len(described) == 1  # manual mode captions only when asked
    spoken = [e["caption"] for e in events if e["event"] == "spoken"]
    text = described[0]["caption"]
    assert spoken == [
        "SceneSpeak ready. Press enter to describe.",
        text,
        text,
        "SceneSpeak stopped",
    ]
    assert events[-1]["event"] == "end" and events[-1]["frames"] < 6 * 30  # q ended it early


def test_show_without_a_gui_warns_once_and_goes_on(tmp_path):
    clip = _still_clip(tmp_path / "still.mp4", seconds=2, fps=15)
    log = tmp_path / "log.jsonl"
    p = _describe(str(clip), "--show", "--no-speak", "--log", str(log))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    events = read_events(log)
    warnings = [
        e["message"] for e in events if e["event"] == "warning" and "--show" in e["message"]
    ]
    if cv2.getBuildInformation().find("GTK") < 0 and "QT" not in cv2.getBuildInformation():
        assert len(warnings) == 1
        # never the GUI wheel: it would fight the headless one SceneSpeak installs
        assert "pip install opencv-python" not in warnings[0] and "docs/runtime.md" in warnings[0]
    assert events[-1]["event"] == "end" and events[-1]["frames"] == 30

"""The voice never dies silently and nothing is lost: a closed console pipe, a full disk, a
player that cannot run, a speech worker that dies, a flapping or missing camera, a slideshow
faster than speech, signals during start-up, absurd options and a log shared between runs.
Real CLI runs with the real espeak-ng voice, real files and real HTTP servers on loopback."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest
from conftest import MODEL, ROOT, read_events, run_cli

from export.scenes import make_scene
from runtime.app.speech import SpeechConfig, SpeechWorker

pytestmark = pytest.mark.system

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed"
)


def _spoken(events, kind="caption"):
    return [e["caption"] for e in events if e["event"] == "spoken" and e["kind"] == kind]


@pytest.fixture(scope="module")
def clip(three_scene_clip):
    return three_scene_clip


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    """What a plain run of the clip says: the captions the broken-output runs must still say."""
    log = tmp_path_factory.mktemp("ref") / "log.jsonl"
    r = run_cli(
        "runtime", "describe", str(clip), "--no-speak", "--log", str(log), "--model", str(MODEL)
    )
    assert r.returncode == 0, r.stderr
    spoken = _spoken(read_events(log))
    assert len(spoken) == 3
    return spoken


# --- outputs that fail: each is dropped with one warning, speech and the log go on -----------


@needs_espeak
def test_a_closed_console_pipe_drops_the_echo_and_speech_goes_on(clip, reference, tmp_path):
    """`describe clip.mp4 | head -2`: the console echo fails after two lines."""
    log = tmp_path / "log.jsonl"
    cmd = (
        f"set -o pipefail; {sys.executable} -m runtime describe {clip} --no-speak --log {log} "
        f"--model {MODEL} 2>{tmp_path / 'err'} | head -2"
    )
    r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    err = (tmp_path / "err").read_text()
    assert r.returncode == 0, err
    assert len(r.stdout.splitlines()) == 2
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.count("warning: console output stopped (Broken pipe); the log goes on") == 1, err
    events = read_events(log)
    assert _spoken(events) == reference  # spoken count equals the caption count of a plain run
    assert _spoken(events, "notice")[-1] == "SceneSpeak stopped" and events[-1]["event"] == "end"


@needs_espeak
def test_a_recording_on_a_full_disk_stops_and_speech_goes_on(clip, reference, tmp_path):
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime",
        "describe",
        str(clip),
        "--no-speak",
        "--speech-wav",
        "/dev/full",
        "--log",
        str(log),
        "--model",
        str(MODEL),
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    events = read_events(log)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings == [
        "/dev/full: cannot record speech (No space left on device); the recording "
        "stops here, speech goes on"
    ]
    assert _spoken(events) == reference and events[-1]["event"] == "end"


class Engine:
    """A stand-in for the voice: renders 0.1 s of silence, or fails as told."""

    def __init__(self, fail=None):
        self.fail, self.calls = fail, 0

    def render(self, text: str) -> bytes:
        self.calls += 1
        if self.fail is not None and self.calls == 1:
            raise self.fail
        return b"\0\0" * 2205


def _worker(engine, **cfg):
    events = []
    w = SpeechWorker(
        SpeechConfig(**cfg),
        lambda name, **kw: events.append((name, kw)),
        engine_factory=lambda c: engine,
    )
    return w, events


@pytest.mark.unit
def test_a_player_that_cannot_run_is_warned_once_and_speech_is_still_logged():
    w, events = _worker(Engine(), play=True)
    w._aplay = "/nonexistent/aplay"  # as if aplay were removed after start-up
    for text in ("one", "two", "three"):
        w.say(text, kind="notice")
        assert w.wait_idle(5)
    w.close()
    spoken = [kw["caption"] for name, kw in events if name == "spoken"]
    plays = [kw["message"] for name, kw in events if name == "warning" and "play" in kw["message"]]
    assert spoken == ["one", "two", "three"]
    assert len(plays) == 1 and plays[0].startswith("cannot play speech (No such file or directory)")


@pytest.mark.unit
# the thread's end is the point: Python ignores a thread's SystemExit, pytest reports it
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_speech_worker_that_dies_is_restarted_and_the_log_says_so():
    """SystemExit in the engine is not an Exception: it ends the worker thread itself."""
    w, events = _worker(Engine(fail=SystemExit(3)), play=False)
    w.say("lost with the worker", kind="notice")
    w._thread.join(5)
    assert not w._thread.is_alive()
    w.say("said by the new worker", kind="notice")
    assert w.wait_idle(5)
    w.close()
    names = [(name, kw.get("message") or kw.get("caption")) for name, kw in events]
    assert ("warning", "the speech worker stopped unexpectedly; restarted") in names
    assert [kw["caption"] for name, kw in events if name == "spoken"] == ["said by the new worker"]


@pytest.mark.unit
def test_an_utterance_that_fails_past_the_engine_is_dropped_with_a_warning_and_the_next_is_said():
    """A failure after rendering (here the first 'spoken' event itself) loses that utterance
    only; an engine failure is retried on a fresh engine instead (test_speech.py)."""
    events, failed = [], []

    def on_event(name, **kw):
        if name == "spoken" and not failed:
            failed.append(kw["caption"])
            raise ValueError("log gone")
        events.append((name, kw))

    w = SpeechWorker(SpeechConfig(play=False), on_event, engine_factory=lambda c: Engine())
    w.say("first", kind="notice")
    w.say("second", kind="notice")
    assert w.wait_idle(5)
    w.close()
    assert failed == ["first"] and [kw["caption"] for name, kw in events if name == "spoken"] == [
        "second"
    ]
    assert ("warning", "speech failed (ValueError: log gone); 'first' was dropped") in [
        (name, kw.get("message")) for name, kw in events
    ]


# --- sources -----------------------------------------------------------------------------------


class StillServer:
    """An HTTP server on loopback that serves one JPEG file: not a stream, so every connection
    gives one frame and ends."""

    def __init__(self, folder):
        cv2.imwrite(str(folder / "still.jpg"), make_scene(7, 4)[0])
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/still.jpg"

    def close(self):
        self.httpd.shutdown()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _describe_for(seconds: float, *args):
    p = subprocess.Popen(
        [sys.executable, "-m", "runtime", "describe", *args, "--model", str(MODEL)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


@needs_espeak
def test_a_flapping_source_is_one_outage_said_once(tmp_path):
    server = StillServer(tmp_path)
    log = tmp_path / "log.jsonl"
    try:
        rc, _, err = _describe_for(8, server.url, "--no-speak", "--log", str(log))
    finally:
        server.close()
    assert rc == 0 and "Traceback" not in err, err
    events = read_events(log)
    names = [e["event"] for e in events]
    assert names.count("source_lost") == 1 and names.count("source_restored") == 0
    notices = _spoken(events, "notice")
    assert notices.count("camera lost") == 1 and "camera back" not in notices
    assert names[-1] == "end"


@needs_espeak
@pytest.mark.parametrize("uri", ["http://127.0.0.1:9/x", "7"])
def test_a_live_source_that_cannot_be_opened_is_said_logged_and_retried(tmp_path, uri):
    log = tmp_path / "log.jsonl"
    rc, _, err = _describe_for(4, uri, "--no-speak", "--log", str(log))
    assert rc == 0 and "Traceback" not in err, err
    assert f"source_lost: {uri}: cannot open source; retrying" in err
    events = read_events(log)
    lost = [e for e in events if e["event"] == "source_lost"]
    assert lost and lost[0]["reason"] == "cannot open source" and lost[0]["starting"] is True
    assert "cannot open the camera; still trying" in _spoken(events, "notice")
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"


def test_a_missing_file_still_exits_2_at_once(tmp_path):
    r = run_cli(
        "runtime", "describe", str(tmp_path / "no.mp4"), "--no-speak", "--model", str(MODEL)
    )
    assert (
        r.returncode == 2
        and r.stderr == f"error: {tmp_path / 'no.mp4'}: no such file, folder or camera\n"
    )


@needs_espeak
def test_a_slideshow_says_every_still_before_the_next(tmp_path):
    """Eight stills, two of them the same scene in a row: each is said, in order, once."""
    folder = tmp_path / "stills"
    folder.mkdir()
    order = [0, 1, 1, 2, 3, 4, 5, 6]
    for i, scene in enumerate(order):
        cv2.imwrite(str(folder / f"{i:02d}.png"), make_scene(7, scene)[0])
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime", "describe", str(folder), "--no-speak", "--log", str(log), "--model", str(MODEL)
    )
    assert r.returncode == 0, r.stderr
    events = read_events(log)
    captions = [(e["frame"], e["caption"]) for e in events if e["event"] == "caption"]
    spoken = [
        (e["frame"], e["caption"])
        for e in events
        if e["event"] == "spoken" and e["kind"] == "caption"
    ]
    assert len(captions) == len(order) and spoken == captions
    assert spoken[1][1] == spoken[2][1]  # the repeated still is said again


# --- signals during start-up, the log across runs --------------------------------------------


@pytest.mark.parametrize(
    "sig,delay", [(signal.SIGINT, 0.1), (signal.SIGTERM, 0.2), (signal.SIGHUP, 0.3)]
)
def test_a_signal_during_start_up_ends_cleanly_with_end_last(tmp_path, sig, delay):
    log = tmp_path / "log.jsonl"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "describe",
            "--no-speak",
            "--log",
            str(log),
            "--model",
            str(MODEL),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "Traceback" not in err, err
    events = read_events(log)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"


def test_the_log_is_appended_and_a_cut_off_line_does_not_spoil_the_next_run(tmp_path):
    folder = tmp_path / "stills"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), make_scene(7, 1)[0])
    log = tmp_path / "log.jsonl"
    log.write_text(
        '{"t": 0.5, "frame": -1, "event": "end"}\n{"t": 3.1, "frame": 7, "eve'
    )  # disk full
    for _ in range(2):
        r = run_cli(
            "runtime",
            "describe",
            str(folder),
            "--no-speak",
            "--log",
            str(log),
            "--model",
            str(MODEL),
        )
        assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines[1] == '{"t": 3.1, "frame": 7, "eve'  # the cut-off line is kept as it was
    runs = [json.loads(l) for l in lines[2:]]
    names = [e["event"] for e in runs]
    assert names.count("start") == 2 and names.count("end") == 2
    assert names[0] == "start" and names[-1] == "end"
    assert names[names.index("end") + 1] == "start"  # each run opens with its start


def test_a_log_in_a_missing_folder_creates_nothing_and_lines_go_to_stderr(tmp_path):
    log = tmp_path / "no" / "such" / "log.jsonl"
    folder = tmp_path / "stills"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), make_scene(7, 1)[0])
    r = run_cli(
        "runtime", "describe", str(folder), "--no-speak", "--log", str(log), "--model", str(MODEL)
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "no").exists()
    assert (
        f"warning: {log}: cannot write the log (No such file or directory); log lines go to stderr"
        in r.stderr
    )
    assert json.loads(r.stderr.splitlines()[-1])["event"] == "end"


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rate", "100000"], "--rate 100000: use 80..450 words per minute"),
        (["--volume", "5"], "--volume 5.0: use more than 0 up to 1 (--no-speak for silence)"),
        (["--volume", "0"], "--volume 0.0: use more than 0 up to 1 (--no-speak for silence)"),
        (["--interval", "0"], "--interval 0.0: use 0.1..86400 seconds"),
        (["--interval", "-1"], "--interval -1.0: use 0.1..86400 seconds"),
        (["--stable-frames", "-3"], "--stable-frames -3: use 1..100 frames"),
        (["--max-frames", "-1"], "--max-frames -1: use 0 (no limit) or more frames"),
        (["--stats-interval", "-5"], "--stats-interval -5.0: use 0 (never) or 1..86400 seconds"),
        (["--threads", "1000"], "--threads 1000: use 0 (auto) to 64 threads"),
        (["--beam", "0"], "--beam 0: use 1 (greedy) to 16 beams"),
    ],
)
def test_absurd_options_are_one_line_and_exit_2(args, message, tmp_path):
    log = tmp_path / "log.jsonl"
    r = run_cli(
        "runtime", "describe", "--no-speak", "--log", str(log), "--model", str(MODEL), *args
    )
    assert r.returncode == 2 and r.stderr == f"error: {message}\n" and r.stdout == ""
    assert not log.exists()  # refused before anything ran


@pytest.mark.parametrize(
    "args,message",
    [
        (["--runs", "0"], "--runs 0: use 1..10000"),
        (
            ["--precisions", "fp32,fp8"],
            "--precisions fp32,fp8: use a comma list of fp32, fp16, int8",
        ),
        (["--rounds", "-1"], "--rounds -1: use 1..100"),
    ],
)
def test_absurd_bench_options_are_one_line_and_exit_2(args, message):
    r = run_cli("runtime", "bench", "--model", str(MODEL), *args)
    assert r.returncode == 2 and r.stderr == f"error: {message}\n"

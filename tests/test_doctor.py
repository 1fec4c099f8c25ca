"""`python -m runtime doctor` on this machine and on a simulated Jetson file tree: what it
finds, and a fix for every problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MODEL, ROOT, run_cli
from test_profiles import BOARDS, fake_board

from runtime.model import io_spec

pytestmark = pytest.mark.system


def jetson_root(tmp_path: Path, celsius: float = 48.5) -> Path:
    """An Orin Nano as doctor sees it: a USB camera, a sound card, memory and one hot zone."""
    root = fake_board(tmp_path / "root", *BOARDS["jetson-orin-nano"])
    (root / "dev/snd").mkdir(parents=True)
    (root / "dev/video0").write_text("")
    (root / "sys/class/video4linux/video0").mkdir(parents=True)
    (root / "sys/class/video4linux/video0/name").write_text("HD USB Camera\n")
    (root / "proc/asound").mkdir(parents=True)
    (root / "proc/asound/cards").write_text(
        " 0 [APE            ]: tegra-ape - NVIDIA Jetson Orin Nano APE\n"
        "                      NVIDIA Jetson Orin Nano APE\n"
    )
    (root / "proc/meminfo").write_text("MemTotal:        7834348 kB\nMemAvailable:     245760 kB\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{int(celsius * 1000)}\n")
    return root


def doctor(*args, root: Path | None = None, model: Path = MODEL):
    env = {"SCENESPEAK_SYSROOT": str(root)} if root else None
    return run_cli("runtime", "doctor", "--model", str(model), *args, env=env, timeout=120)


def checks_by_name(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in report["checks"]:
        out.setdefault(c["name"], []).append(c)
    return out


def test_doctor_on_this_machine_reports_profile_and_voice():
    r = doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "profile    laptop-cpu" in r.stdout
    assert "providers  available" in r.stdout and "chosen CPUExecutionProvider" in r.stdout
    assert "[ok  ] bundle" in r.stdout and "every sha256 matches" in r.stdout
    tts = next(l for l in r.stdout.splitlines() if "] tts" in l)
    if shutil.which("espeak-ng"):  # the voice this machine has is the one reported
        assert tts.startswith("[ok  ]") and "espeak" in tts, tts
    else:
        assert tts.startswith("[FAIL]") and "fix: sudo apt-get install espeak-ng" in r.stdout, tts
    for line in r.stdout.splitlines():  # every problem comes with its fix on the next line
        if line.startswith(("[WARN]", "[FAIL]")):
            nxt = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
            assert nxt.strip().startswith("fix: "), line


def test_doctor_json_on_a_simulated_orin(tmp_path):
    r = doctor("--json", root=jetson_root(tmp_path, celsius=91.0))
    assert r.returncode == 0, r.stdout + r.stderr  # warnings only: captioning still works
    report = json.loads(r.stdout)
    assert (
        report["board"]["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
        and report["board"]["jetson"]
    )
    assert report["profile"]["name"] == "jetson-orin-nano"
    assert report["providers"]["wanted"] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert report["providers"]["chosen"] == ["CPUExecutionProvider"]
    assert report["precision"] == "int8"  # fell back to the CPU, so the CPU's fastest
    assert report["cameras"]["v4l2"] == [
        {"device": "/dev/video0", "name": "HD USB Camera", "accessible": True}
    ]
    assert report["speech"]["sound_cards"][0].startswith("0 [APE")
    assert report["memory_mb"] == {"total": 7650, "available": 240}
    assert report["temperatures_c"] == {"cpu-thermal": 91.0}
    checks = checks_by_name(report)
    assert (
        checks["providers"][0]["status"] == "warn"
        and "device/README.md" in checks["providers"][0]["fix"]
    )
    assert checks["camera"][0] == {
        "name": "camera",
        "status": "ok",
        "detail": "/dev/video0 HD USB Camera",
        "fix": None,
    }
    assert (
        checks["memory"][0]["status"] == "warn"
        and "240 MB available" in checks["memory"][0]["detail"]
    )
    assert (
        checks["temperature"][0]["status"] == "warn" and "91" in checks["temperature"][0]["detail"]
    )
    assert "fan" in checks["temperature"][0]["fix"]
    # the simulated board has a sound card: ok where aplay is installed, else the one fix
    audio = checks["audio"][0]
    if shutil.which("aplay"):
        assert audio["status"] == "ok" and audio["detail"].startswith("0 [APE"), audio
    else:
        assert audio["status"] == "warn" and "aplay is missing" in audio["detail"], audio


def test_doctor_without_camera_or_sound_says_what_to_plug_in(tmp_path):
    root = fake_board(tmp_path / "root", *BOARDS["jetson-nano"])
    report = json.loads(doctor("--json", root=root).stdout)
    checks = checks_by_name(report)
    assert report["profile"]["name"] == "jetson-nano"
    assert checks["camera"][0]["status"] == "warn" and "USB" in checks["camera"][0]["fix"]
    assert checks["audio"][0]["status"] == "warn" and "aplay -l" in checks["audio"][0]["fix"]


def test_doctor_fails_on_a_damaged_bundle_and_names_the_file(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(MODEL, bundle)
    graph = bundle / io_spec.graph_file("int8", "decoder_step")
    graph.write_bytes(graph.read_bytes()[:-10])
    r = doctor(model=bundle)
    assert r.returncode == 1
    fail = [l for l in r.stdout.splitlines() if l.startswith("[FAIL]")]
    assert fail == [
        f"[FAIL] bundle      {graph}: sha256 mismatch, the file is damaged or was changed"
    ]
    # a bundle outside this checkout is not git's to restore
    assert (
        f"fix: {bundle} is not a bundle of this checkout: copy it again from where it came "
        "from, or export it again with `python -m export onnx`" in r.stdout
    )
    assert "git" not in r.stdout and "fix the FAIL lines first" in r.stdout
    assert "profile    laptop-cpu" in r.stdout  # the board is still reported
    assert "Traceback" not in r.stderr


@pytest.mark.unit
def test_doctor_on_a_damaged_bundle_of_this_checkout_names_git(tmp_path):
    """The shipped bundle is checked through a copy of the checkout's layout: the hint is the
    git command that restores it, run from anywhere."""
    from runtime.app.doctor import _restore_hint

    hint = _restore_hint(str(ROOT / "models" / "shapes"))
    assert hint.startswith(f"restore it: git -C {ROOT} checkout -- models/shapes")

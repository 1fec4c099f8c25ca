"""`python -m runtime doctor`: what this machine is and what is wrong with it, each problem
with the fix to apply.

    python -m runtime doctor            # readable report; exit 1 when something is broken
    python -m runtime doctor --json     # the same as one JSON object

Checks: the board and its device profile, the execution providers (available and chosen), the
bundle (every file's hash, and the chosen precision loaded and run once), cameras, the voice and
the audio output, free memory and disk, temperatures and the Jetson power mode.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime import ROOT
from runtime.app import assemble
from runtime.app.assemble import ModelOptions
from runtime.app.profiles import detect_board, plan_providers, select_profile, sysroot, temperatures
from runtime.errors import SceneSpeakError
from runtime.model.session import cache_root

LOW_MEMORY_MB = 400  # the int8 runtime needs ~150 MB; a Jetson also shares this with the GPU
LOW_DISK_MB = 500  # TensorRT engines and the log
HOT_C = 85.0  # Jetson and laptop CPUs throttle from about here


@dataclass
class Check:
    name: str
    status: str  # ok | warn | error
    detail: str
    fix: str | None = None


def _recipe(bundle) -> str:
    """The command that rebuilds a bundle, as its provenance records it."""
    recipe = (bundle.manifest.get("provenance") or {}).get("recipe")
    return recipe if isinstance(recipe, str) and recipe.startswith("make ") else "make models-real"


def _restore_hint(model: str) -> str:
    """How to get a damaged bundle back: from git where it is one of this checkout's, else
    from whoever made it."""
    path = Path(model).resolve()
    if path.is_relative_to(ROOT / "models") and (ROOT / ".git").exists():
        rel = path.relative_to(ROOT)
        return (
            f"restore it: git -C {ROOT} checkout -- {rel} (or rebuild it: `make models-real` "
            "for models/default, `make models-shapes` for models/shapes)"
        )
    return (
        f"{model} is not a bundle of this checkout: copy it again from where it came from, "
        "or export it again with `python -m export onnx`"
    )


def _bundle_checks(opts: ModelOptions, board, available: list[str], report: dict) -> list[Check]:
    from runtime.model.bundle import load_bundle

    model = opts.bundle
    try:
        bundle = load_bundle(model)
        for precision in bundle.precisions:
            bundle.graph_paths(precision)  # checks every hash
    except SceneSpeakError as e:
        return [Check("bundle", "error", str(e), _restore_hint(model))]
    report["bundle"] = {
        "path": str(bundle.root),
        "precisions": list(bundle.precisions),
        "vocab": len(bundle.vocab),
    }
    checks = [
        Check("bundle", "ok", f"{model}: {', '.join(bundle.precisions)}, every sha256 matches")
    ]
    where = assemble.placement(bundle, opts, available, board)
    report["profile"] = {
        "name": where.profile.name,
        "reason": where.reason,
        "description": where.profile.description,
    }
    report["providers"] = {
        "available": available,
        "wanted": list(where.profile.provider_names),
        "chosen": list(where.plan.names),
        "missing": list(where.plan.missing),
    }
    report["precision"] = where.precision
    if where.reason.startswith("no profile"):
        checks.append(
            Check(
                "profile",
                "warn",
                where.reason,
                "pick the closest board with --device NAME, or add a profile to device/profiles",
            )
        )
    if where.plan.warning:
        checks.append(
            Check(
                "providers",
                "warn",
                where.plan.warning,
                "install the onnxruntime-gpu build for this board: device/README.md",
            )
        )
    else:
        checks.append(Check("providers", "ok", " > ".join(where.plan.names)))
    try:
        cap = assemble.sessions(bundle, where)
    except SceneSpeakError as e:
        checks.append(
            Check("sessions", "error", str(e), f"rebuild the bundle with `{_recipe(bundle)}`")
        )
        return checks
    report["startup"] = cap.startup
    built = cap.startup["engines_built"]
    detail = f"{where.precision} on {cap.providers[0]}, ready in {cap.startup['ready_s']:.2f} s" + (
        f" (built {built} TensorRT engine files into {cap.startup['engine_cache']})"
        if built
        else ""
    )
    checks.append(Check("sessions", "ok", detail))
    report["bundle"]["objects"] = cap.has_objects
    if not cap.has_objects:
        checks.append(
            Check(
                "objects",
                "warn",
                "the encoder has no ImageNet head: no objects channel",
                f"export the bundle again with this version (`{_recipe(bundle)}`)",
            )
        )
    else:
        try:
            names = bundle.object_names()
        except SceneSpeakError as e:
            checks.append(Check("objects", "error", str(e), _restore_hint(model)))
        else:
            checks.append(
                Check("objects", "ok", f"ImageNet head with {len(set(names))} spoken names")
            )
    return checks + _channel_checks(bundle, where, cap, report)


def _channel_checks(bundle, where, cap, report: dict) -> list[Check]:
    """Each channel of the registry built as `describe` builds it: ready, or why not."""
    import time

    from runtime.channels.registry import REGISTRY, build, hint, why_not

    setup = assemble.setup(cap, where)
    checks, report["channels"] = [], {}
    for name in REGISTRY:
        if name in ("caption", "objects"):
            continue  # the sessions and objects lines above
        reason = why_not(name, setup)
        if reason is None:
            t0 = time.perf_counter()
            try:
                build(name, setup)
            except SceneSpeakError as e:
                reason = str(e)
        report["channels"][name] = reason or "ready"
        if reason:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"no {name} channel: {reason}",
                    hint(name) or f"rebuild the bundle with `{_recipe(bundle)}`",
                )
            )
        else:
            checks.append(Check(name, "ok", f"ready in {time.perf_counter() - t0:.2f} s"))
    return checks


def _available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _camera_checks(root: Path, jetson: bool, report: dict) -> list[Check]:
    import cv2

    cams = []
    for dev in sorted((root / "dev").glob("video*"), key=lambda p: (len(p.name), p.name)):
        name = root / "sys/class/video4linux" / dev.name / "name"
        cams.append(
            {
                "device": f"/dev/{dev.name}",
                "name": name.read_text().strip() if name.is_file() else "",
                "accessible": os.access(dev, os.R_OK | os.W_OK),
            }
        )
    gstreamer = "GStreamer:                   YES" in cv2.getBuildInformation()
    report["cameras"] = {"v4l2": cams, "opencv_gstreamer": gstreamer}
    checks = []
    if not cams:
        checks.append(
            Check(
                "camera",
                "warn",
                "no /dev/video* camera found",
                "plug in a USB (UVC) webcam or seat the CSI ribbon cable; "
                "describe also takes files, folders and streams",
            )
        )
    for cam in cams:
        if cam["accessible"]:
            checks.append(Check("camera", "ok", f"{cam['device']} {cam['name']}".strip()))
        else:
            checks.append(
                Check(
                    "camera",
                    "error",
                    f"{cam['device']}: no permission to open it",
                    "sudo usermod -aG video $USER, then log out and in",
                )
            )
    if jetson and not gstreamer:
        checks.append(
            Check(
                "csi",
                "warn",
                "this OpenCV has no GStreamer, so csi://N cannot open",
                "use JetPack's OpenCV: bash device/setup-jetson.sh builds the venv "
                "with --system-site-packages",
            )
        )
    return checks


def _speech_checks(root: Path, report: dict) -> list[Check]:
    from runtime.app.speech import Pyttsx3Engine, SpeechConfig

    checks = []
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    try:
        engine = Pyttsx3Engine(SpeechConfig())
        voice = engine.voice
        engine.close()
        checks.append(
            Check(
                "tts",
                "ok",
                f"pyttsx3 with {Path(espeak).name if espeak else 'its driver'}, voice {voice}",
            )
        )
    except Exception as e:  # pyttsx3 raises whatever its driver raises
        voice = None
        checks.append(
            Check(
                "tts",
                "error",
                f"no text-to-speech engine ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''})",
                "sudo apt-get install espeak-ng",
            )
        )
    cards = [
        line.strip()
        for line in _read(root / "proc/asound/cards").splitlines()
        if line.strip()[:1].isdigit()
    ]
    aplay = shutil.which("aplay")
    report["speech"] = {
        "engine": "pyttsx3",
        "espeak": espeak,
        "voice": voice,
        "sound_cards": cards,
        "aplay": aplay,
    }
    if not cards:
        checks.append(
            Check(
                "audio",
                "warn",
                "no sound card: speech is written to --speech-wav and the log, not heard",
                "connect a speaker or headset; check with `aplay -l`",
            )
        )
    elif not aplay:
        checks.append(
            Check(
                "audio",
                "warn",
                "aplay is missing, so speech cannot be played",
                "sudo apt-get install alsa-utils",
            )
        )
    elif not os.access(root / "dev/snd", os.R_OK):
        checks.append(
            Check(
                "audio",
                "error",
                "no permission to use /dev/snd",
                "sudo usermod -aG audio $USER, then log out and in",
            )
        )
    else:
        checks.append(Check("audio", "ok", cards[0]))
    return checks


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _system_checks(root: Path, report: dict) -> list[Check]:
    checks = []
    mem = {}
    for line in _read(root / "proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            mem[key] = int(value.split()[0]) // 1024
    if "MemAvailable" in mem:
        report["memory_mb"] = {"total": mem.get("MemTotal"), "available": mem["MemAvailable"]}
        low = mem["MemAvailable"] < LOW_MEMORY_MB
        checks.append(
            Check(
                "memory",
                "warn" if low else "ok",
                f"{mem['MemAvailable']} MB available of {mem.get('MemTotal')} MB",
                "close other programs, or add swap (device/README.md)" if low else None,
            )
        )
    cache = cache_root()
    probe = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free // 2**20
    report["disk_free_mb"] = {str(probe): free}
    checks.append(
        Check(
            "disk",
            "warn" if free < LOW_DISK_MB else "ok",
            f"{free} MB free at {probe}",
            "free some space for TensorRT engines and logs" if free < LOW_DISK_MB else None,
        )
    )
    off = os.environ.get("ORT_DISABLE_TELEMETRY") == "1"  # runtime/__init__.py sets it
    report["telemetry"] = "off" if off else "on"
    checks.append(
        Check(
            "telemetry",
            "ok" if off else "error",
            "off: ONNX Runtime sends nothing and writes no device id"
            if off
            else "ONNX Runtime's telemetry is on",
            None if off else "run SceneSpeak through `python -m runtime`, which turns it off",
        )
    )
    temps = temperatures(root)
    report["temperatures_c"] = temps
    if temps:
        zone, hottest = max(temps.items(), key=lambda kv: kv[1])
        hot = hottest >= HOT_C
        checks.append(
            Check(
                "temperature",
                "warn" if hot else "ok",
                f"hottest {zone} {hottest:.0f} °C",
                "the board will throttle: add a fan or heatsink, or a lower power mode"
                if hot
                else None,
            )
        )
    return checks


def diagnose(opts: ModelOptions = ModelOptions()) -> dict:
    """Every check, as {"board": ..., "profile": ..., "checks": [...], "ok": bool}."""
    root = sysroot()
    board = detect_board(root)
    report: dict = {"board": asdict(board) | {"jetson": board.jetson}}
    available = _available()
    checks = _bundle_checks(opts, board, available, report)
    if "profile" not in report:  # the bundle is broken: still say what this board would run
        profile, reason = select_profile(opts.device, board, available)
        plan = plan_providers(profile, available)
        report["profile"] = {
            "name": profile.name,
            "reason": reason,
            "description": profile.description,
        }
        report["providers"] = {
            "available": available,
            "wanted": list(profile.provider_names),
            "chosen": list(plan.names),
            "missing": list(plan.missing),
        }
    checks += _camera_checks(root, board.jetson, report)
    checks += _speech_checks(root, report)
    checks += _system_checks(root, report)
    report["checks"] = [asdict(c) for c in checks]
    report["ok"] = not any(c.status == "error" for c in checks)
    return report


def render(report: dict) -> str:
    """The report as the lines `doctor` prints."""
    board = report["board"]
    lines = [
        f"board      {board['model'] or 'not a Jetson (no device-tree model)'}"
        + (f", L4T {board['release'].split(',')[0]}" if board["release"] else "")
    ]
    if "profile" in report:
        p, pr = report["profile"], report["providers"]
        lines += [
            f"profile    {p['name']}: {p['description']} ({p['reason']})",
            f"providers  available {', '.join(pr['available'])}; chosen {' > '.join(pr['chosen'])}",
            f"precision  {report.get('precision', 'none: the bundle did not load')}",
        ]
    marks = {"ok": "ok  ", "warn": "WARN", "error": "FAIL"}
    for c in report["checks"]:
        lines.append(f"[{marks[c['status']]}] {c['name']:<11} {c['detail']}")
        if c["fix"]:
            lines.append(f"       fix: {c['fix']}")
    problems = sum(c["status"] != "ok" for c in report["checks"])
    verdict = "nothing blocks captioning" if report["ok"] else "fix the FAIL lines first"
    lines.append(f"{problems} problem(s); {verdict}" if problems else "all good")
    return "\n".join(lines)

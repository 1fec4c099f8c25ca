"""Device profiles: which execution providers, precision, threads and camera pipeline a board
gets. One TOML file per board in device/profiles/; the board is detected from
/proc/device-tree/model and /etc/nv_tegra_release, or named with --device.

    board = detect_board()                    # what this machine is
    profile, why = select_profile(None, board) # its profile, and why it was chosen
    plan = plan_providers(profile, ort.get_available_providers(), cache_dir)

`sysroot` (default "/", or $SCENESPEAK_SYSROOT) lets tests present a Jetson's files on any
machine: detection reads <sysroot>/proc/device-tree/model and so on.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime import DATA
from runtime.errors import InputError
from runtime.model.io_spec import PRECISIONS
from runtime.model.session import CPU, GPU_PROVIDERS, SessionConfig, cache_root, default_precision

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

PROFILES_DIR = DATA / "device" / "profiles"
FALLBACK = "laptop-cpu"
USB_BACKENDS = ("v4l2", "any")
# unknown Jetsons take the profile of their L4T generation
RELEASE_FALLBACK = {"R32": "jetson-nano", "R35": "jetson-orin-nano", "R36": "jetson-orin-nano"}


@dataclass(frozen=True)
class Capture:
    width: int  # requested camera frame size and rate
    height: int
    fps: int
    usb: str  # OpenCV backend for /dev/videoN: "v4l2" or "any"
    csi: str  # GStreamer pipeline for csi://N with {sensor} {width} {height} {fps}; "": the
    # generic nvarguscamerasrc one (runtime.app.sources.CSI_PIPELINE)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    precision: str  # default precision when a GPU provider is in use (CPU: int8)
    threads: int  # ONNX Runtime intra-op threads of the encoder (0: every core)
    detect: tuple[str, ...]  # substrings of /proc/device-tree/model that mean this board
    capture: Capture
    providers: tuple[tuple[str, dict], ...]  # in order of preference, CPU last

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.providers)


def sysroot() -> Path:
    return Path(os.environ.get("SCENESPEAK_SYSROOT", "/"))


def _field(d: dict, key: str, kind: type, where: str):
    if key not in d:
        raise InputError(f"{where}: missing {key!r}")
    if not isinstance(d[key], kind) or (kind is int and isinstance(d[key], bool)):
        raise InputError(f"{where}: {key!r} must be {kind.__name__}")
    return d[key]


def load_profile(path: Path) -> DeviceProfile:
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{path}: not a readable TOML profile ({e})") from None
    where = str(path)
    cap = _field(d, "capture", dict, where)
    providers = []
    for i, p in enumerate(_field(d, "providers", list, where)):
        name = _field(p, "name", str, f"{where}:providers[{i}]")
        providers.append((name, dict(p.get("options", {}))))
    if not providers or providers[-1][0] != CPU:
        raise InputError(f"{where}: the 'providers' list must end with {CPU}")
    if cap.get("usb") not in USB_BACKENDS:
        raise InputError(f"{where}: capture.usb must be one of {', '.join(USB_BACKENDS)}")
    precision = _field(d, "precision", str, where)
    if precision not in PRECISIONS:
        raise InputError(f"{where}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return DeviceProfile(
        name=_field(d, "name", str, where),
        description=_field(d, "description", str, where),
        precision=precision,
        threads=_field(d, "threads", int, where),
        detect=tuple(_field(d, "detect", list, where)),
        capture=Capture(
            **{
                k: _field(cap, k, t, where + ":capture")
                for k, t in (
                    ("width", int),
                    ("height", int),
                    ("fps", int),
                    ("usb", str),
                    ("csi", str),
                )
            }
        ),
        providers=tuple(providers),
    )


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def get_profile(name: str) -> DeviceProfile:
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise InputError(f"--device {name!r}: no such profile (have: {', '.join(profile_names())})")
    return load_profile(path)


@dataclass(frozen=True)
class Board:
    model: str  # /proc/device-tree/model, "" where there is none
    release: str  # "R36 (release), REVISION: 3.0, ..." from /etc/nv_tegra_release; "" if none
    power_mode: str  # nvpmodel mode, "MAXN (0)", where readable; else ""

    @property
    def jetson(self) -> bool:
        return bool(self.release) or "jetson" in self.model.lower()

    @property
    def generation(self) -> str:
        """The L4T major release, 'R36', from the release line; '' off a Jetson."""
        return self.release.split(" ")[0] if self.release else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return ""


def detect_board(root: Path | None = None) -> Board:
    root = root or sysroot()
    release = _read(root / "etc/nv_tegra_release").splitlines()
    power = ""
    for line in _read(root / "var/lib/nvpmodel/status").splitlines():  # "pmode:0002 fmode:..."
        raw = line.split()[0].split(":", 1)[1] if line.startswith("pmode:") else ""
        if raw.isdigit():
            mode = int(raw)
            names = dict(
                re.findall(
                    r"< POWER_MODEL ID=(\d+) NAME=(\S+) >", _read(root / "etc/nvpmodel.conf")
                )
            )
            power = f"{names.get(str(mode), 'mode')} ({mode})"
    return Board(
        _read(root / "proc/device-tree/model"),
        release[0].lstrip("# ").strip() if release else "",
        power,
    )


def select_profile(
    name: str | None, board: Board, available: list[str] | tuple[str, ...] = ()
) -> tuple[DeviceProfile, str]:
    """The profile to use and why: the named one, the board's, or a fallback."""
    if name and name != "auto":
        return get_profile(name), f"chosen with --device {name}"
    profiles = [get_profile(n) for n in profile_names()]
    for p in profiles:
        if any(s.lower() in board.model.lower() for s in p.detect):
            return p, f"detected {board.model!r}"
    if board.jetson:
        fallback = RELEASE_FALLBACK.get(board.generation, "jetson-orin-nano")
        return get_profile(fallback), (
            f"no profile for {board.model or 'this Jetson'!r}; "
            f"using {fallback} for L4T {board.generation or 'unknown'}"
        )
    if any(p in available for p in GPU_PROVIDERS):
        return get_profile("cuda-desktop"), "not a Jetson; onnxruntime offers CUDA"
    return get_profile(FALLBACK), "not a Jetson and no GPU provider in onnxruntime"


@dataclass(frozen=True)
class ProviderPlan:
    providers: tuple[tuple[str, dict], ...]  # what sessions get: (name, options), CPU last
    missing: tuple[str, ...]  # providers the profile wants that onnxruntime lacks
    warning: str | None  # one line when the profile's GPU providers are all unavailable
    engine_cache: Path | None  # TensorRT engine cache directory, when TensorRT is chosen

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.providers)

    @property
    def gpu(self) -> bool:
        return any(n in GPU_PROVIDERS for n in self.names)


def plan_providers(
    profile: DeviceProfile, available: list[str] | tuple[str, ...], engine_cache: Path | None = None
) -> ProviderPlan:
    """Intersect the profile's providers with what onnxruntime offers, in the profile's order.
    TensorRT gets `engine_cache` (per model and precision) for its engine and timing caches."""
    chosen, missing = [], []
    for name, options in profile.providers:
        if name != CPU and name not in available:
            missing.append(name)
            continue
        options = dict(options)
        if name == "TensorrtExecutionProvider" and engine_cache is not None:
            if options.get("trt_engine_cache_enable"):
                options["trt_engine_cache_path"] = str(engine_cache)
            if options.get("trt_timing_cache_enable"):
                options["trt_timing_cache_path"] = str(engine_cache)
        chosen.append((name, options))
    wanted_gpu = [n for n in profile.provider_names if n in GPU_PROVIDERS]
    warning = None
    if wanted_gpu and not any(n in GPU_PROVIDERS for n, _ in chosen):
        warning = (
            f"profile {profile.name} wants {' or '.join(wanted_gpu)} but this onnxruntime "
            f"offers only {', '.join(available) or 'CPU'}; running on the CPU "
            f"(install onnxruntime-gpu, see device/README.md)"
        )
    trt = any(n == "TensorrtExecutionProvider" for n, _ in chosen)
    return ProviderPlan(tuple(chosen), tuple(missing), warning, engine_cache if trt else None)


def temperatures(root: Path | None = None) -> dict[str, float]:
    """Thermal zones in degrees C by name, where the board exposes them (Jetsons and most
    laptops do); {} elsewhere."""
    temps = {}
    for zone in sorted((root or sysroot()).glob("sys/class/thermal/thermal_zone*")):
        try:
            temps[(zone / "type").read_text().strip()] = int((zone / "temp").read_text()) / 1000
        except (OSError, ValueError):
            continue
    return temps


def engine_cache_dir(bundle, precision: str) -> Path:
    """Per model and precision, keyed by the graphs' hashes: a changed bundle never loads a
    stale engine, and the first run builds what later runs load."""
    import hashlib

    digest = hashlib.sha256(
        "".join(f.sha256 for graphs in bundle.files.values() for f in graphs.values()).encode()
    )
    return (
        cache_root()
        / "tensorrt"
        / f"{bundle.root.resolve().name}-{digest.hexdigest()[:12]}"
        / precision
    )


@dataclass(frozen=True)
class Placement:
    """Where and how a bundle runs on this machine."""

    board: Board
    profile: DeviceProfile
    reason: str  # why this profile
    precision: str
    plan: ProviderPlan
    session: SessionConfig


def place(
    bundle,
    device: str | None = None,
    precision: str | None = None,
    threads: int = 0,
    available: list[str] | tuple[str, ...] | None = None,
    board: Board | None = None,
) -> Placement:
    """Pick the profile (named or detected), its providers on this onnxruntime, the precision
    (given, or the fastest for the chosen providers) and the session options."""
    import onnxruntime as ort

    available = tuple(ort.get_available_providers() if available is None else available)
    board = board or detect_board()
    profile, reason = select_profile(device, board, available)
    gpu = any(n in GPU_PROVIDERS and n in available for n in profile.provider_names)
    precision = precision or default_precision(bundle.precisions, gpu, profile.precision)
    plan = plan_providers(
        profile,
        available,
        engine_cache_dir(bundle, precision) if precision in bundle.files else None,
    )
    session = SessionConfig(providers=plan.providers, intra_op_threads=threads or profile.threads)
    return Placement(board, profile, reason, precision, plan, session)

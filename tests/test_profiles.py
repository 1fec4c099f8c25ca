"""Device profiles: board detection on simulated Jetson file trees, provider plans against the
providers a JetPack onnxruntime-gpu offers, CPU fallback on this machine, IO binding."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from conftest import MODEL, TEST_SEED, run_cli

from export.scenes import make_scene
from runtime.app.profiles import (
    Board,
    detect_board,
    get_profile,
    load_profile,
    place,
    plan_providers,
    profile_names,
    select_profile,
)
from runtime.app.sources import SourceConfig, csi_pipeline
from runtime.errors import InputError
from runtime.model import io_spec
from runtime.model.bundle import load_bundle
from runtime.model.captioner import BoundStepModel, Captioner, OrtStepModel
from runtime.model.session import SessionConfig
from runtime.model.vocab import normalize

pytestmark = pytest.mark.unit

JETPACK_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
BOARDS = {  # /proc/device-tree/model and the first line of /etc/nv_tegra_release, as shipped
    "jetson-nano": (
        "NVIDIA Jetson Nano Developer Kit",
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64",
    ),
    "jetson-orin-nano": (
        "NVIDIA Jetson Orin Nano Developer Kit",
        "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64",
    ),
    "jetson-agx-orin": (
        "Jetson AGX Orin",
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64",
    ),
}


def fake_board(root: Path, model: str = "", release: str = "") -> Path:
    """A sysroot with a Jetson's identifying files (device-tree strings end with a NUL)."""
    if model:
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\0")
    if release:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/nv_tegra_release").write_text(release + "\n")
    return root


def test_every_profile_loads_and_ends_with_cpu():
    names = profile_names()
    assert {
        "laptop-cpu",
        "jetson-nano",
        "jetson-orin-nano",
        "jetson-agx-orin",
        "cuda-desktop",
    } <= set(names)
    for name in names:
        p = get_profile(name)
        assert p.name == name
        assert p.provider_names[-1] == "CPUExecutionProvider"
        assert p.precision in io_spec.PRECISIONS
        if p.capture.csi:  # a pipeline OpenCV's GStreamer backend can take
            pipe = csi_pipeline(
                1,
                SourceConfig(
                    width=p.capture.width,
                    height=p.capture.height,
                    fps=p.capture.fps,
                    csi=p.capture.csi,
                ),
            )
            assert pipe.startswith("nvarguscamerasrc sensor-id=1 ") and pipe.endswith(
                "appsink drop=true max-buffers=1"
            )
            assert f"width={p.capture.width}" in pipe and "{" not in pipe


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_jetsons_are_detected_from_their_files(tmp_path, name):
    board = detect_board(fake_board(tmp_path, *BOARDS[name]))
    assert board.jetson and board.generation == BOARDS[name][1].split()[1]
    profile, why = select_profile(None, board)
    assert profile.name == name, why
    assert BOARDS[name][0] in why


def test_unknown_jetson_takes_its_generations_profile(tmp_path):
    board = detect_board(
        fake_board(
            tmp_path, "NVIDIA Jetson Xavier NX Developer Kit", "# R35 (release), REVISION: 5.0"
        )
    )
    profile, why = select_profile(None, board)
    assert profile.name == "jetson-orin-nano"
    assert "no profile for 'NVIDIA Jetson Xavier NX Developer Kit'" in why and "R35" in why


def test_pc_gets_cuda_profile_only_when_onnxruntime_has_cuda(tmp_path):
    board = detect_board(tmp_path)  # no device tree, no tegra release
    assert not board.jetson
    assert select_profile(None, board, ("CPUExecutionProvider",))[0].name == "laptop-cpu"
    assert select_profile(None, board, JETPACK_PROVIDERS)[0].name == "cuda-desktop"
    assert select_profile("jetson-nano", board)[0].name == "jetson-nano"


@pytest.mark.system
def test_unknown_profile_name_lists_the_known_ones():
    r = run_cli("runtime", "caption", "x.png", "--device", "raspberry-pi", "--model", str(MODEL))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: --device 'raspberry-pi': no such profile (have: {', '.join(profile_names())})"
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (("threads = 0", 'threads = "two"'), "'threads' must be int"),
        (
            ('precision = "int8"', 'precision = "int4"'),
            "precision 'int4' is not one of fp32, fp16, int8",
        ),
        (('[[providers]]\nname = "CPUExecutionProvider"', ""), "'providers'"),
        (("width = 640", "width = 640\nwidth = 320"), "not a readable TOML profile"),
    ],
)
def test_broken_profile_names_the_field(tmp_path, edit, message):
    text = (Path(__file__).resolve().parent.parent / "device/profiles/laptop-cpu.toml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(InputError, match=re.escape(f"{bad}: ") + ".*" + re.escape(message)):
        load_profile(bad)


def test_jetpack_providers_get_tensorrt_with_per_model_precision_cache(tmp_path):
    bundle = load_bundle(MODEL)
    board = detect_board(fake_board(tmp_path, *BOARDS["jetson-orin-nano"]))
    fp16 = place(bundle, available=JETPACK_PROVIDERS, board=board)
    assert fp16.profile.name == "jetson-orin-nano" and fp16.precision == "fp16"
    assert fp16.plan.names == JETPACK_PROVIDERS and fp16.plan.warning is None
    trt = dict(fp16.session.providers)["TensorrtExecutionProvider"]
    assert (
        trt["trt_fp16_enable"]
        and trt["trt_engine_cache_enable"]
        and trt["trt_max_workspace_size"] > 0
    )
    cache = Path(trt["trt_engine_cache_path"])
    assert cache == fp16.plan.engine_cache and cache.name == "fp16"
    assert cache.parent.name.startswith(bundle.root.resolve().name + "-")
    int8 = place(bundle, precision="int8", available=JETPACK_PROVIDERS, board=board)
    assert int8.plan.engine_cache == cache.parent / "int8"
    assert fp16.session.gpu and fp16.session.intra_op_threads == 2


def test_nano_keeps_tensorrt_int8_off():
    plan = plan_providers(get_profile("jetson-nano"), JETPACK_PROVIDERS, Path("/tmp/x"))
    trt = dict(plan.providers)["TensorrtExecutionProvider"]
    assert trt["trt_fp16_enable"] and not trt["trt_int8_enable"]
    assert dict(plan.providers)["CUDAExecutionProvider"]["cudnn_conv_algo_search"] == "HEURISTIC"


def test_missing_gpu_providers_fall_back_to_cpu_with_one_warning(tmp_path):
    bundle = load_bundle(MODEL)
    board = detect_board(fake_board(tmp_path, *BOARDS["jetson-agx-orin"]))
    where = place(bundle, available=("CPUExecutionProvider",), board=board)
    assert where.plan.names == ("CPUExecutionProvider",)
    assert where.plan.missing == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert (
        "jetson-agx-orin wants TensorrtExecutionProvider or CUDAExecutionProvider"
        in where.plan.warning
    )
    assert where.precision == "int8"  # the fastest on the CPU, not the profile's GPU fp16


@pytest.mark.system
def test_cli_on_a_simulated_jetson_runs_on_cpu_and_warns_once(tmp_path):
    img, caps = make_scene(TEST_SEED, 3)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), img)
    root = fake_board(tmp_path / "root", *BOARDS["jetson-orin-nano"])
    r = run_cli(
        "runtime",
        "caption",
        str(path),
        str(path),
        "--model",
        str(MODEL),
        env={"SCENESPEAK_SYSROOT": str(root)},
    )
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    assert (
        len(warnings) == 1
        and "jetson-orin-nano" in warnings[0]
        and "device/README.md" in warnings[0]
    )
    assert [l.split("\t")[1] for l in r.stdout.splitlines()] == [normalize(caps[0])] * 2


def test_tensorrt_options_are_ignored_safely_where_tensorrt_is_absent(tmp_path):
    """A session config meant for a Jetson opens on this CPU-only onnxruntime."""
    plan = plan_providers(get_profile("jetson-orin-nano"), JETPACK_PROVIDERS, tmp_path / "engines")
    cap = Captioner(load_bundle(MODEL), "fp16", SessionConfig(providers=plan.providers))
    assert cap.providers == ["CPUExecutionProvider"]
    assert (
        cap.startup["engine_cache"] == str(tmp_path / "engines")
        and cap.startup["engines_built"] == 0
    )


def test_io_binding_keeps_state_on_the_device_and_captions_the_same():
    bundle = load_bundle(MODEL)
    plain = Captioner(bundle, "fp32", SessionConfig(io_binding="off"))
    bound = Captioner(bundle, "fp32", SessionConfig(io_binding="on"))
    assert isinstance(plain.step_model, OrtStepModel) and not plain.startup["io_binding"]
    assert isinstance(bound.step_model, BoundStepModel) and bound.startup["io_binding"]
    for i in range(6):
        img, _ = make_scene(TEST_SEED, i)
        a, b = plain.caption(img), bound.caption(img)
        assert a.text == b.text and np.allclose(a.alphas, b.alphas, atol=1e-6)
    # the state handed from step to step is an OrtValue on the session's device, not numpy
    from runtime.model.decoding import initial_state

    state = initial_state(bound.encode(np.zeros((1, 3, 224, 224), np.float32)))
    _, nxt, _ = bound.step_model.step(np.array([bundle.vocab.bos]), state)
    assert isinstance(nxt["h"], ort.OrtValue) and nxt["h"].device_name() == "cpu"
    assert isinstance(nxt["regions"], ort.OrtValue)


@pytest.mark.system
def test_describe_tells_systemd_it_is_ready(tmp_path):
    """Type=notify: READY=1 arrives on $NOTIFY_SOCKET once describe is up."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), make_scene(TEST_SEED, 0)[0])
    sock_path = str(tmp_path / "notify.sock")
    got = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(sock_path)
        server.settimeout(60)

        def receive():
            try:
                while len(got) < 2:
                    got.append(server.recv(256).decode())
            except OSError:
                pass

        t = threading.Thread(target=receive)
        t.start()
        r = run_cli(
            "runtime",
            "describe",
            str(folder),
            "--no-speak",
            "--model",
            str(MODEL),
            "--log",
            str(tmp_path / "log.jsonl"),
            env={"NOTIFY_SOCKET": sock_path},
        )
        t.join(10)
    assert r.returncode == 0, r.stderr
    assert got[0].startswith("READY=1") and got[1] == "STOPPING=1"
    events = [json.loads(l)["event"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert events[:2] == ["start", "device"] and "service_ready" in events and events[-1] == "end"


def test_service_unit_restarts_and_waits_for_ready():
    unit = (Path(__file__).resolve().parent.parent / "device" / "scenespeak.service").read_text()
    keys = dict(l.split("=", 1) for l in unit.splitlines() if "=" in l and not l.startswith("#"))
    assert keys["Type"] == "notify" and keys["Restart"] == "on-failure"
    assert "-m runtime describe" in keys["ExecStart"] and keys["WantedBy"] == "multi-user.target"
    assert set(keys["SupplementaryGroups"].split()) == {"video", "audio"}


def test_board_power_mode_is_read_from_nvpmodel(tmp_path):
    root = fake_board(tmp_path, *BOARDS["jetson-orin-nano"])
    (root / "var/lib/nvpmodel").mkdir(parents=True)
    (root / "var/lib/nvpmodel/status").write_text("pmode:0001 fmode:quiet\n")
    (root / "etc/nvpmodel.conf").write_text(
        "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n"
    )
    assert detect_board(root) == Board(
        "NVIDIA Jetson Orin Nano Developer Kit", BOARDS["jetson-orin-nano"][1][2:], "7W (1)"
    )


def test_encoder_pool_stops_spinning_when_a_run_returns():
    """Between frames the encoder's thread pool sleeps: after a run, the process uses next to
    no CPU while it waits. ONNX Runtime's pool would otherwise spin for 40-50 ms after every
    run, a whole core, which is why stop_spinning can be turned off only on purpose."""
    import time

    from runtime.model.session import create_session

    path = load_bundle(MODEL).graph_paths("int8")[io_spec.ENCODER]
    blob = np.zeros((1, 3, 224, 224), np.float32)

    def cpu_ms_while_idle(cfg: SessionConfig) -> float:
        session = create_session(path, cfg)
        session.run(None, {"image": blob})
        burnt = []
        for _ in range(5):
            session.run(None, {"image": blob})
            t = time.process_time()
            time.sleep(0.1)
            burnt.append((time.process_time() - t) * 1e3)
        return float(np.median(burnt))

    assert cpu_ms_while_idle(SessionConfig(intra_op_threads=2)) < 5
    assert cpu_ms_while_idle(SessionConfig(intra_op_threads=2, stop_spinning=False)) > 10

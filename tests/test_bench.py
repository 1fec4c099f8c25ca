"""`python -m runtime bench`: the contract's JSON, the table, the plot and --compare."""

import json

import cv2
import pytest
from conftest import MODEL, REAL_MODEL, needs_torch, run_cli

from runtime.model import io_spec

pytestmark = pytest.mark.system

ROW_KEYS = {
    "backend",
    "precision",
    "provider",
    "encoder_ms",
    "decoder_step_ms",
    "caption_ms",
    "steps_mean",
    "rss_mb",
    "model_mb",
    "agreement_vs_fp32",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # the shapes fixture on its own scenes (the default images are real photos)
    args = [
        "runtime",
        "bench",
        "--model",
        str(MODEL),
        "--images",
        "assets/bench_scenes",
        "--runs",
        "1",
        "--warmup",
        "2",
        "--rounds",
        "2",
        "--json",
        str(out / "b.json"),
        "--plot",
        str(out / "b.png"),
        "--markdown",
        str(out / "b.md"),
    ]
    from conftest import HAS_TORCH

    if HAS_TORCH:
        args.append("--torch")
    r = run_cli(*args, timeout=900)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "b.json").read_text()), out, r.stdout


def test_json_follows_the_contract(report):
    data, _, _ = report
    assert {"cpu", "cores", "threads", "onnxruntime", "providers"} <= set(data["machine"])
    rows = {(r["backend"], r["precision"]): r for r in data["results"]}
    assert {("onnxruntime", p) for p in ("fp32", "fp16", "int8")} <= set(rows)
    for r in rows.values():
        assert ROW_KEYS <= set(r)
        for k in ("encoder_ms", "decoder_step_ms", "caption_ms"):
            assert 0 < r[k]["p50"] <= r[k]["p95"]
        assert r["caption_ms"]["p50"] > r["encoder_ms"]["p50"]
        assert 2 <= r["steps_mean"] <= 25 and r["rss_mb"] > 10 and r["model_mb"] > 0.5
    assert rows[("onnxruntime", "fp32")]["agreement_vs_fp32"] == 1.0
    assert rows[("onnxruntime", "int8")]["agreement_vs_fp32"] >= 0.9
    # the shapes bundle's fp32 files (fp32 weights): int8 is far smaller
    int8, fp32 = rows[("onnxruntime", "int8")], rows[("onnxruntime", "fp32")]
    assert int8["model_mb"] <= fp32["model_mb"] * 0.35


def test_preprocess_overhead_and_on_disk_ratio_are_in_the_json_and_table(report):
    data, _, table = report
    header = table.splitlines()[2]
    assert "| preprocess p50 |" in header and "| overhead p50 |" in header
    assert "| model ÷ fp32 |" in header
    disk = data["on_disk"]
    for r in data["results"]:
        for k in ("preprocess_ms", "decoder_steps_ms", "overhead_ms"):
            assert r[k]["p50"] <= r[k]["p95"], k
        assert 0 < r["preprocess_ms"]["p50"] < r["caption_ms"]["p50"]
        # the glue between the parts, not a part: under the caption less its encoder and steps
        assert 0 <= r["overhead_ms"]["p50"] < r["caption_ms"]["p50"] - r["encoder_ms"]["p50"]
        if r["backend"] == "onnxruntime":
            assert r["model_vs_fp32"] == disk["vs_fp32"][r["precision"]]
            assert r["model_mb"] == disk["mb"][r["precision"]]
            assert f"| {r['overhead_ms']['p50']:.2f} | {r['caption_ms']['p50']:.2f} |" in table
        else:
            assert "model_vs_fp32" not in r
    int8 = disk["vs_fp32"]["int8"]  # of the bytes; the MB are rounded
    assert int8 == pytest.approx(disk["mb"]["int8"] / disk["mb"]["fp32"], abs=2e-3)
    assert (
        f"On disk: int8 {disk['mb']['int8']:.2f} MB = {int8:.3f} × fp32's "
        f"{disk['mb']['fp32']:.2f} MB"
    ) in table


@pytest.mark.unit
def test_overhead_is_the_caption_less_its_parts_preprocessing_among_them(monkeypatch, capsys):
    """serve_row on a stand-in captioner whose stages take known times: the overhead is what the
    caption took beyond preprocess, encoder and its decoder steps, and preprocessing is timed on
    its own, not counted as overhead."""
    import io
    import sys
    import time

    from runtime.app.bench import REPLY, serve_row

    class Step:
        def step(self, token, state):
            time.sleep(0.002)  # 2 ms a step
            return None

    class Stand:
        step_model = Step()

        def caption(self, frame):
            self.step_model.step(None, None)
            self.step_model.step(None, None)
            from types import SimpleNamespace

            # preprocess 3 ms, encoder 4 ms, the two steps 4+ ms, 1 ms of glue besides
            ms = {"preprocess": 3.0, "encoder": 4.0}
            ms["total"] = 3.0 + 4.0 + sum(self.step_model.times[-2:]) + 1.0
            return SimpleNamespace(timings_ms=ms, steps=2, text="a")

    monkeypatch.setattr(sys, "stdin", io.StringIO("pass\npass\nend\n"))
    serve_row({"backend": "stand-in"}, Stand(), [None, None], warmup=1)
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1][len(REPLY) :])
    assert row["preprocess_ms"]["p50"] == 3.0 and row["encoder_ms"]["p50"] == 4.0
    assert row["overhead_ms"]["p50"] == pytest.approx(1.0, abs=1e-6)
    assert row["decoder_steps_ms"]["p50"] >= 4.0 and len(row["samples"]["overhead"]) == 4
    assert row["caption_ms"]["p50"] == pytest.approx(8.0 + row["decoder_steps_ms"]["p50"], abs=0.5)


def test_objects_head_cost_is_timed_against_the_encoder_without_it(report):
    data, _, table = report
    for r in data["results"]:
        if r["backend"] != "onnxruntime" or r.get("decoding", "greedy") != "greedy":
            continue
        with_head, without = r["encoder_objects_ms"], r["encoder_no_objects_ms"]
        assert 0 < without["p50"] <= without["p95"] and 0 < with_head["p50"] <= with_head["p95"]
        # the graph timed against it is the encoder without its ImageNet head, and nothing less
        assert r["encoder_no_objects_outputs"] == list(io_spec.ENCODER_OUTPUTS)
        # the row's overhead is the one its two timings give, as the table prints it
        assert f"| {r['objects_overhead_pct']:.2f} |" in table
        # and the price of placing the objects: the map output against the graph as shipped
        assert 0 < r["encoder_plain_ms"]["p50"] and f"| {r['where_overhead_pct']:.2f} |" in table


def test_int8_encoder_gain_is_timed_in_pairs_against_its_floor(report):
    """fp32 ÷ int8 encoder from runs paired image by image in one process: every bench image
    in every paired pass gives a pair, the median lies inside the middle half, and the line
    states the figure against the floor of 1.8 as met or not by the figure itself."""
    from runtime.app.bench import PAIRED_PASSES, BenchConfig, int8_encoder_gain

    data, _, table = report
    eg = data["int8_encoder_gain"]
    assert eg["pairs"] == data["runs"] * PAIRED_PASSES * data["images"]
    lo, hi = eg["ratio_iqr"]
    assert 0 < lo <= eg["ratio"] <= hi and eg["floor"] == 1.8
    assert 0 < eg["int8_encoder_ms"]["p50"] and 0 < eg["fp32_encoder_ms"]["p50"]
    met = "met" if eg["ratio"] >= 1.8 else "NOT met"
    assert f"{eg['ratio']:.2f}, p50 {eg['fp32_encoder_ms']['p50']:.2f} / " in table
    assert f"(floor 1.8: {met})." in table
    # without both precisions there is nothing to pair, and nothing is loaded
    assert int8_encoder_gain(BenchConfig(precisions=("fp32", "fp16")), []) is None


def test_text_channel_cost_is_timed_with_and_without_a_sign(report):
    data, _, table = report
    text = data["text"]
    assert 0 < text["no_text_ms"]["p50"] and 0 < text["sign_ms"]["p50"]
    read, n = map(int, text["signs_read"].split("/"))
    assert n == data["images"] and read >= n - 1  # the pasted sign is read on (almost) every image
    assert "Text channel (rapidocr PP-OCRv6 (ONNX Runtime)), once per new scene" in table
    assert "objects head +%" in table


@needs_torch
def test_torch_reference_is_the_same_model(report):
    data, _, table = report
    rows = {(r["backend"], r["precision"]): r for r in data["results"]}
    torch_row, onnx_row = rows[("torch", "fp32")], rows[("onnxruntime", "fp32")]
    assert torch_row["agreement_vs_fp32"] == 1.0  # same weights, same captions
    # the torch ÷ int8 caption ratio, stated against its floor of 3
    tv, int8 = data["torch_vs_int8"], rows[("onnxruntime", "int8")]
    assert tv["floor"] == 3 and tv["torch_caption_p50"] == torch_row["caption_ms"]["p50"]
    assert tv["ratio"] == round(torch_row["caption_ms"]["p50"] / int8["caption_ms"]["p50"], 2)
    assert f"int8, caption p50: {tv['torch_caption_p50']:.2f} / " in table
    # and the same weights in fp32: the same size within the graphs' own bytes (the ImageNet
    # head's 4.9 MB included, which both run)
    assert abs(torch_row["model_mb"] - onnx_row["model_mb"]) <= 0.02 * onnx_row["model_mb"]


def test_table_plot_and_compare(report, tmp_path):
    data, out, stdout = report
    assert "| onnxruntime | int8 |" in stdout
    assert (out / "b.md").read_text().strip() == stdout.strip()
    n = data["images"]
    for r in data["results"]:  # the agreement as a share and as a count of the bench images
        same = round(r["agreement_vs_fp32"] * n)
        assert f"| {r['agreement_vs_fp32']:.3f} ({same}/{n}) |" in stdout
    assert f"| 1.000 ({n}/{n}) |" in stdout
    png = cv2.imread(str(out / "b.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 300
    faster = json.loads(json.dumps(data))
    for r in faster["results"]:
        r["caption_ms"]["p50"] /= 2
    (tmp_path / "after.json").write_text(json.dumps(faster))
    r = run_cli("runtime", "bench", "--compare", str(out / "b.json"), str(tmp_path / "after.json"))
    assert r.returncode == 0, r.stderr
    assert "| onnxruntime | int8 | 1.00 | 1.00 | 0.50 | 1.00 |" in r.stdout


def test_bad_arguments_are_one_line(tmp_path):
    r = run_cli("runtime", "bench", "--precisions", "fp8", "--model", str(MODEL))
    assert r.returncode == 2
    assert r.stderr == "error: --precisions fp8: use a comma list of fp32, fp16, int8\n"
    (tmp_path / "x.json").write_text("{")
    r = run_cli("runtime", "bench", "--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json"))
    assert r.returncode == 2 and "x.json: not a benchmark JSON" in r.stderr


def test_a_baseline_bundle_is_timed_in_the_same_passes_as_a_row_of_its_own(tmp_path):
    """`--baseline DIR` adds that bundle's int8 greedy row beside this one's (here the real-photo
    default beside the shapes fixture, on the scenes): its captions are its own, it is not
    compared with this bundle's fp32, and the report gives int8 p50 ÷ the baseline's."""
    out = tmp_path / "b.json"
    args = ["--images", "assets/bench_scenes", "--runs", "1", "--rounds", "1", "--warmup", "1"]
    r = run_cli(
        "runtime", "bench", "--model", str(MODEL), "--precisions", "fp32,int8", *args,
        "--baseline", str(REAL_MODEL), "--json", str(out), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    fp32, int8, base = report["results"]
    assert "bundle" not in int8 and base["bundle"] == str(REAL_MODEL)
    assert base["precision"] == "int8" and base["decoding"] == "greedy"
    assert base["agreement_vs_fp32"] is None and int8["agreement_vs_fp32"] is not None
    assert base.get("model_vs_fp32") is None and base["model_mb"] > int8["model_mb"]
    vb = report["vs_baseline"]
    a, b = int8["caption_ms"]["p50"], base["caption_ms"]["p50"]
    assert vb["ratio"] == round(a / b, 3) and vb["ceiling"] == 1.3
    assert f"| onnxruntime, baseline {REAL_MODEL.name} | int8 | greedy |" in r.stdout
    assert f"int8 greedy caption p50: {a:.2f} / {b:.2f} = {a / b:.3f} (ceiling 1.3:" in r.stdout
    # a baseline that is not a bundle is one line, before anything is timed
    r = run_cli("runtime", "bench", "--model", str(MODEL), "--baseline", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: --baseline: "), r.stderr
    assert len(r.stderr.splitlines()) == 1 and "bench" not in r.stdout


def test_a_row_that_fails_is_named_in_one_line(tmp_path):
    """A row's child process dies (here on a damaged int8 graph): the run stops with its reason."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(MODEL, bundle)
    target = bundle / "encoder.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    r = run_cli(
        "runtime", "bench", "--model", str(bundle), "--runs", "1", "--rounds", "1", timeout=300
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1].split("\r")[-1]
    assert last == (
        f"error: bench onnxruntime int8 failed: {target}: sha256 mismatch, the file is "
        "damaged or was changed"
    )


@pytest.mark.unit
def test_rounds_pool_every_sample_of_a_row():
    from runtime.app.bench import pool

    def run(enc, rss, captions):
        samples = {
            "preprocess": [0.1] * 4,
            "encoder": enc,
            "decoder_step": [0.05] * 40,
            "caption": [e + 1 for e in enc],
            "steps": [10] * 4,
        }
        return {
            "backend": "onnxruntime",
            "precision": "int8",
            "samples": samples,
            "rss_mb": rss,
            "captions": captions,
            "encoder_ms": {"p50": -1},
            "model_mb": 5.0,
        }

    # a round slowed by load elsewhere moves the pooled median far less than it moves its own
    row = pool(
        [
            run([3.0, 3.1, 3.2, 3.3], 100.0, ["a"]),
            run([9.0, 9.1, 9.2, 9.3], 120.0, ["b"]),
            run([3.0, 3.2, 3.1, 3.3], 110.0, ["c"]),
        ]
    )
    assert row["encoder_ms"]["p50"] == pytest.approx(3.25)
    assert row["caption_ms"]["p50"] == pytest.approx(4.25)
    assert row["rss_mb"] == 120.0 and row["captions"] == ["a"] and row["model_mb"] == 5.0
    assert row["steps_mean"] == 10 and "samples" not in row


@pytest.mark.unit
def test_readme_shows_the_committed_run():
    """The README's table is docs/bench.json as `bench` renders it, and the ratios quoted in
    docs/performance.md are that run's."""
    from conftest import ROOT

    from runtime.app.bench import markdown

    data = json.loads((ROOT / "docs" / "bench.json").read_text())
    table = (ROOT / "docs" / "bench.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert table.strip() == markdown(data).strip()
    for line in table.splitlines():
        if line.startswith(("|", "Machine:", "Speech")):
            assert line in readme, line
    rows = {  # this bundle's rows (a baseline bundle's row is named by its "bundle")
        (r["backend"], r["precision"], r["decoding"]): r
        for r in data["results"]
        if "bundle" not in r
    }
    fp32, int8 = rows[("onnxruntime", "fp32", "greedy")], rows[("onnxruntime", "int8", "greedy")]
    torch = rows[("torch", "fp32", "greedy")]
    performance = (ROOT / "docs" / "performance.md").read_text()
    for slow, fast, stage in ((torch, int8, "caption_ms"), (fp32, int8, "encoder_ms")):
        a, b = slow[stage]["p50"], fast[stage]["p50"]
        assert f"{a:.2f} / {b:.2f} = {a / b:.2f}" in performance, stage
    for line in table.splitlines():  # the lines a newer run adds below the table
        if line.startswith(
            ("On disk:", "PyTorch eager", "ONNX Runtime fp32 ÷ int8", "This bundle ÷ the baseline")
        ):
            assert line in readme, line


def test_torch_eager_is_at_least_3_times_the_int8_caption_in_the_committed_run():
    """The floor the README and docs/performance.md state for PyTorch eager ÷ ONNX Runtime int8
    (caption p50), held by the committed run wherever it has a torch row; and the caption ÷
    encoder ratio is no longer presented as a bar."""
    from conftest import ROOT

    data = json.loads((ROOT / "docs" / "bench.json").read_text())
    rows = {
        (r["backend"], r["precision"], r.get("decoding", "greedy")): r
        for r in data["results"]
        if "bundle" not in r
    }
    torch = rows.get(("torch", "fp32", "greedy"))
    if torch is None:
        pytest.skip("the committed run has no torch row")
    a, b = torch["caption_ms"]["p50"], rows[("onnxruntime", "int8", "greedy")]["caption_ms"]["p50"]
    assert a / b >= 3, f"torch ÷ int8 caption p50 {a:.2f} / {b:.2f} = {a / b:.2f}, under 3"
    performance = (ROOT / "docs" / "performance.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "PyTorch eager ÷ ORT int8, caption p50 ≥ 3 |" in performance
    for text in (performance, readme):
        assert "1.6 × int8 encoder" not in text and "caption ÷ encoder ≤" not in text


def test_int8_on_disk_is_at_most_0_6_of_fp32_in_the_shipped_bundle(tmp_path):
    """What a user downloads for a precision of models/default is its graphs and the weights
    files they read (fp32's weights stored as fp16, in the files fp16 shares): int8's is at most
    0.6 of fp32's, and each precision runs from those files alone (with the manifest and the
    objects table, which every precision needs)."""
    import shutil

    from runtime.app.bench import load_frames, on_disk
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner

    disk = on_disk(str(REAL_MODEL))
    assert disk["files"]["int8"] == ["decoder_step.int8.onnx", "encoder.int8.onnx"]
    assert disk["files"]["fp32"] == [
        "decoder_step.fp32.onnx",
        "decoder_step.weights",
        "encoder.fp32.onnx",
        "encoder.weights",
    ]
    size = {
        p: sum((REAL_MODEL / f).stat().st_size for f in files) for p, files in disk["files"].items()
    }
    assert disk["vs_fp32"]["int8"] == round(size["int8"] / size["fp32"], 4)
    assert size["int8"] <= 0.6 * size["fp32"], f"{size['int8']} B against {size['fp32']} B"
    # as the manifest records them too
    manifest = json.loads((REAL_MODEL / "manifest.json").read_text())["files"]
    recorded = {
        p: sum(g["bytes"] + (g["data"]["bytes"] if "data" in g else 0) for g in graphs.values())
        for p, graphs in manifest.items()
    }
    assert recorded["int8"] == size["int8"] and recorded["fp32"] == size["fp32"]
    shared = [
        f
        for f in REAL_MODEL.iterdir()
        if not any(f.name in files for files in disk["files"].values())
    ]
    frame = load_frames(None)[2]
    for precision in ("int8", "fp32"):
        folder = tmp_path / precision
        folder.mkdir()
        for f in shared + [REAL_MODEL / n for n in disk["files"][precision]]:
            shutil.copy(f, folder)
        alone = Captioner(load_bundle(folder), precision).caption(frame)
        whole = Captioner(load_bundle(REAL_MODEL), precision).caption(frame)
        assert alone.text and alone.tokens == whole.tokens, (alone.text, whole.text)


def test_text_channel_is_timed_as_describe_builds_it(monkeypatch):
    """The Setup `describe` gives its channels when it plays a file with its default options is
    the one bench times the text channel with, down to the reader's settings."""
    import dataclasses
    import signal

    import runtime.__main__ as cli
    import runtime.app.describe as describe
    from runtime.app.assemble import ModelOptions
    from runtime.app.bench import BenchConfig, describe_setup, load_frames, text_timing

    seen = {}

    class Stop:  # describe up to its loop: what it built, then out
        def __init__(self, channels, source, speech, *args, **kwargs):
            seen["setup"] = channels.setup
            seen["text"] = next(c for c in channels.slow if c.name == "text")
            source.close()
            speech.close()

        def run(self):
            return 0

    monkeypatch.setattr(describe, "DescribeLoop", Stop)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert cli.main(["describe", "--model", str(REAL_MODEL), "--no-speak"]) == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    ours = describe_setup(BenchConfig(ModelOptions(model=str(REAL_MODEL))))
    for f in dataclasses.fields(ours):
        if f.name == "bundle":
            assert ours.bundle.root.resolve() == seen["setup"].bundle.root.resolve()
        else:
            assert getattr(ours, f.name) == getattr(seen["setup"], f.name), f.name
    assert ours.live is False and ours.verbosity == "brief" and ours.session is not None
    t = text_timing(load_frames(None)[:1], 1, ours)
    reader = seen["text"].reader
    assert t["setup"] == {
        "precision": seen["setup"].precision,
        "where": "words",
        "verbosity": "brief",
        "live": False,
        "providers": [n for n, _ in seen["setup"].session.providers],
        "engine": reader.engine_type,
        "side": reader.cfg.side,
        "threads": reader.cfg.threads,
        "min_score": reader.cfg.min_score,
        "max_lines": seen["text"].max_lines,
    }
    assert t["signs_read"] == "1/1"


def test_detector_cost_is_timed_for_each_precision_as_describe_builds_it():
    """The detector channel of the default bundle, fp32 and int8 side by side on the committed
    photos: its cost per frame, and how often int8 states what fp32 states."""
    from conftest import REAL_MODEL

    from runtime.app.assemble import ModelOptions
    from runtime.app.bench import BenchConfig, detector_timing, load_frames

    frames = load_frames(None)  # assets/photos, in name order: astronaut, camera, chelsea, ...
    t = detector_timing(frames, 2, BenchConfig(ModelOptions(model=str(REAL_MODEL))))
    assert t["model"] == "NanoDet-g" and t["input"] == [416, 416]
    assert set(t["ms"]) == {"fp32", "int8"}
    for ms in t["ms"].values():
        assert 0 < ms["p50"] <= ms["p95"] < 1000
    for p in ("fp32", "int8"):  # what each states on each photo, as the channel says it
        assert "person" in t["said"][p][0] and t["said"][p][2] == "cat", t["said"][p]
    assert set(t["agreement_vs_fp32"]) == {"int8"} and t["agreement_vs_fp32"]["int8"] >= 0.6


def test_memory_with_every_channel_is_measured_in_a_describe_process():
    from runtime.app.bench import markdown, memory_with_every_channel

    mem = memory_with_every_channel(str(REAL_MODEL), 120)
    assert mem["frames"] == 120 and mem["channels"] == "all"
    assert 100 < mem["rss_mb_first"] <= mem["rss_mb_peak"] < 2000
    assert mem["rss_mb_last"] <= mem["rss_mb_peak"]
    machine = {"cpu": "x", "cores": 2, "threads": 2, "onnxruntime": "1", "providers": []}
    text = markdown({"machine": machine, "images": 1, "runs": 1, "results": [], "memory": mem})
    assert f"over 120 frames: resident {mem['rss_mb_first']:.0f} MB" in text

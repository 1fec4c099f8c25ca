"""Scenes -> train -> ONNX fp32/fp16/int8 -> runtime, on a small set; every graph validated."""

import json

import numpy as np
import pytest
from conftest import needs_torch, run_cli

# the module's bundle is trained and exported here, in-process: tens of seconds
pytestmark = [pytest.mark.system, needs_torch]


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    from export.onnx_export import ExportConfig, export_bundle
    from export.scenes import write_scenes
    from export.train import TrainConfig, train

    root = tmp_path_factory.mktemp("pipeline")
    write_scenes(root / "train", 96, seed=21)
    ckpt = train(
        TrainConfig(
            train=str(root / "train"),
            out=str(root / "model.pt"),
            epochs=4,
            batch_size=32,
            cache_dir=str(root / "cache"),
        )
    )
    # four epochs on 96 scenes leave small logit margins; the default bundle is held to 0.97
    out = export_bundle(
        ExportConfig(
            checkpoint=str(ckpt),
            out=str(root / "bundle"),
            n_calib=16,
            n_val=16,
            name="small",
            min_agreement=0.8,
        )
    )
    return out


def test_fp16_weight_storage_computes_the_same_from_half_the_bytes(small_bundle, tmp_path):
    """--weights fp16: the fp32 graphs read their fp16-exact weights as fp16 bytes (a Cast at
    load) and the fp16 graphs read those bytes as they are; fp32 outputs are bit for bit the
    fp32-stored bundle's."""
    import onnx

    from export.onnx_export import ExportConfig, export_bundle
    from runtime.model.bundle import load_bundle
    from runtime.model.captioner import Captioner
    from runtime.model.preprocess import preprocess

    m = json.loads((small_bundle / "manifest.json").read_text())
    ckpt = m["provenance"]["train_config"]["out"]
    half = export_bundle(
        ExportConfig(
            checkpoint=ckpt,
            out=str(tmp_path / "half"),
            n_calib=16,
            n_val=16,
            name="small",
            min_agreement=0.8,
            weights="fp16",
        )
    )
    a, b = load_bundle(small_bundle), load_bundle(half)
    for graph in ("encoder", "decoder_step"):
        full_bytes = a.files["fp32"][graph].data.path.stat().st_size
        half_bytes = b.files["fp32"][graph].data.path.stat().st_size
        assert half_bytes < 0.55 * full_bytes, (graph, half_bytes, full_bytes)
        g = onnx.load(str(b.files["fp16"][graph].path), load_external_data=False).graph
        shared = [i for i in g.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
        assert shared and all(
            i.data_type == onnx.TensorProto.FLOAT16 for i in shared if not i.name.endswith("_fp32")
        )
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    for precision in ("fp32", "fp16"):
        ca, cb = Captioner(a, precision), Captioner(b, precision)
        for f in frames:
            blob = preprocess(f, a.preprocess)
            ea, eb = ca.encode(blob), cb.encode(blob)
            for k in ea:
                if precision == "fp32":
                    assert np.array_equal(ea[k], eb[k]), k
                else:
                    assert np.allclose(ea[k], eb[k], rtol=1e-2, atol=1e-2), k
            assert ca.caption(f).text == cb.caption(f).text


def test_export_writes_every_precision_validated_against_torch(small_bundle):
    m = json.loads((small_bundle / "manifest.json").read_text())
    assert set(m["files"]) == {"fp32", "fp16", "int8"}
    v = m["validation"]
    assert v["fp32"]["decoder_step.logits"] <= 1e-4  # the contract: fp32 logits at atol 1e-4
    assert v["fp32"]["caption_agreement"] == 1.0
    assert all(v[p]["caption_agreement"] >= 0.8 for p in ("fp16", "int8"))
    assert m["provenance"]["train_data"]["seed"] == 21
    size = {
        p: sum(f["bytes"] + f.get("data", {}).get("bytes", 0) for f in m["files"][p].values())
        for p in m["files"]
    }
    assert size["int8"] <= 0.35 * size["fp32"]  # int8 weights against fp32 ones


def test_fp16_graphs_cast_the_fp32_weights_file(small_bundle):
    """fp32 reads one external weights file per graph, and fp16 reads the very same bytes
    through Casts that ONNX Runtime folds at load: every weight is on disk once, in fp32, and
    the fp16 graph holds no weights of its own."""
    import onnx
    from onnx import numpy_helper

    m = json.loads((small_bundle / "manifest.json").read_text())
    for graph in ("encoder", "decoder_step"):
        f32, f16 = m["files"]["fp32"][graph], m["files"]["fp16"][graph]
        assert f32["data"] == f16["data"] and f32["data"]["path"] == f"{graph}.weights"
        g = onnx.load(str(small_bundle / f16["path"]), load_external_data=False).graph
        shared = {i.name for i in g.initializer if i.data_location == onnx.TensorProto.EXTERNAL}
        casts = [n for n in g.node if n.op_type == "Cast" and n.input[0] in shared]
        assert casts and all(c.attribute[0].i == onnx.TensorProto.FLOAT16 for c in casts)
        embedded = sum(len(i.raw_data) for i in g.initializer if i.name not in shared)
        assert embedded < 0.01 * f32["data"]["bytes"]
    g = onnx.load(str(small_bundle / m["files"]["fp32"]["encoder"]["path"])).graph
    big = [
        numpy_helper.to_array(i)
        for i in g.initializer
        if i.data_type == onnx.TensorProto.FLOAT and int(np.prod(i.dims)) >= 4096
    ]
    assert sum(w.size for w in big) > 4_000_000  # the backbone and its ImageNet head, in fp32...
    assert all(
        np.array_equal(w.astype(np.float16).astype(np.float32), w) for w in big
    )  # ...fp16-exact
    assert "Pad" not in {n.op_type for n in g.node}  # SAME padding folded into the convs
    read = {i for n in g.node for i in n.input}
    assert all(i.name in read for i in g.initializer)  # and the Pads' amounts gone with them


@pytest.mark.unit
def test_pruning_keeps_the_weights_a_subgraph_reads():
    """runtime.model.prune drops dead nodes and initializers, but a branch reads outer tensors by
    name without listing them as its node's inputs, so there it keeps every initializer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from runtime.model.prune import without_outputs

    def branch(name, src):
        return helper.make_graph(
            [helper.make_node("Identity", [src], [name])],
            name,
            [],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])],
        )

    def graph(nodes):
        return helper.make_graph(
            nodes,
            "g",
            [
                helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
            initializer=[numpy_helper.from_array(np.ones(1, np.float32), "w")],
        )

    dead = helper.make_node("Neg", ["x"], ["unused"])
    cond = helper.make_node(
        "If", ["c"], ["y"], then_branch=branch("a", "w"), else_branch=branch("b", "x")
    )
    kept = onnx.load_from_string(
        without_outputs(helper.make_model(graph([cond, dead])).SerializeToString())
    )
    assert [n.op_type for n in kept.graph.node] == ["If"] and [
        i.name for i in kept.graph.initializer
    ] == ["w"]
    plain = onnx.load_from_string(
        without_outputs(
            helper.make_model(
                graph([helper.make_node("Abs", ["x"], ["y"]), dead])
            ).SerializeToString()
        )
    )
    assert [n.op_type for n in plain.graph.node] == ["Abs"] and not plain.graph.initializer


def test_int8_encoder_is_qdq_with_u8_activations_and_s8_weights(small_bundle):
    import onnx

    g = onnx.load(str(small_bundle / "encoder.int8.onnx")).graph
    ops = {n.op_type for n in g.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    zero_points = {i.name: i.data_type for i in g.initializer if i.name.endswith("_zero_point")}
    types = set(zero_points.values())
    assert onnx.TensorProto.UINT8 in types and onnx.TensorProto.INT8 in types


def test_int8_encoder_multiplies_the_last_map_by_the_weights_training_rounded(
    small_bundle, tmp_path
):
    """The head's product with the backbone's last map is int8 in the int8 encoder, with the
    very int8 levels that training on int8 features rounds its weights to, and ONNX Runtime
    runs it as one MatMulIntegerToFloat on the int8 map (no float copy of the 1280 channels)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from export.model import LAST_CHANNELS, int8_rounded_rows, round_trained_weights_fp16
    from export.train import load_checkpoint

    m = json.loads((small_bundle / "manifest.json").read_text())
    model, _, _ = load_checkpoint(m["provenance"]["train_config"]["out"])
    w = round_trained_weights_fp16(model).head.project.weight[:, :LAST_CHANNELS].detach()
    scale = w.abs().amax(1) / 127
    want = torch.round(int8_rounded_rows(w) / scale[:, None]).numpy().T  # (1280, D) levels
    g = onnx.load(str(small_bundle / "encoder.int8.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    levels = [
        inits[n.input[0]]
        for n in g.node
        if n.op_type == "DequantizeLinear"
        and inits.get(n.input[0], np.zeros(0)).shape == want.shape
    ]
    assert len(levels) == 1 and levels[0].dtype == np.int8
    assert np.array_equal(levels[0], want)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(
        str(small_bundle / "encoder.int8.onnx"), so, providers=["CPUExecutionProvider"]
    )
    optimized = onnx.load(so.optimized_model_filepath, load_external_data=False)
    ops = [n.op_type for n in optimized.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1


def test_validation_fails_a_graph_that_differs_from_torch(small_bundle, tmp_path):
    import shutil

    import onnx
    from onnx import numpy_helper

    from export.datasets import read_jsonl
    from export.features import load_images
    from export.model import round_trained_weights_fp16
    from export.torch_backend import TorchStepModel
    from export.train import load_checkpoint
    from export.validate import ValidationError, validate
    from runtime.model.bundle import load_bundle, sha256

    bad = tmp_path / "bad"
    shutil.copytree(small_bundle, bad)
    path = bad / "decoder_step.fp32.onnx"
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # the biggest weight
    w = numpy_helper.to_array(init) * 1.01
    init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    onnx.save(model, str(path))
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["fp32"]["decoder_step"]["sha256"] = sha256(path)
    (bad / "manifest.json").write_text(json.dumps(m))
    torch_model, _, ckpt = load_checkpoint(m["provenance"]["train_config"]["out"])
    round_trained_weights_fp16(torch_model)  # as the export does
    images = load_images(read_jsonl(ckpt["train"]["train"])[:4])
    with pytest.raises(ValidationError, match="fp32 decoder_step"):
        validate(load_bundle(bad), TorchStepModel(torch_model), images, "fp32")


def test_small_bundle_runs_through_the_runtime_cli(small_bundle, tmp_path):
    import cv2

    from export.scenes import make_scene

    cv2.imwrite(str(tmp_path / "s.png"), make_scene(21, 0)[0])
    r = run_cli(
        "runtime", "caption", str(tmp_path / "s.png"), "--model", str(small_bundle), "--json"
    )
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert 1 <= row["steps"] <= json.loads((small_bundle / "manifest.json").read_text())["max_len"]


def _train_on(small_bundle, out, **cfg):
    """One more epoch from the small bundle's checkpoint (or `init=`); its train config and the
    new path."""
    from export.train import TrainConfig, train

    first = json.loads((small_bundle / "manifest.json").read_text())["provenance"]["train_config"]
    config = TrainConfig(
        train=first["train"],
        out=str(out),
        epochs=1,
        batch_size=32,
        cache_dir=first["cache_dir"],
        **{"init": first["out"], **cfg},
    )
    return first, train(config)


def test_training_resumes_from_a_checkpoint_with_its_vocabulary(small_bundle, tmp_path):
    from export.onnx_export import ExportConfig, _provenance
    from export.train import load_checkpoint

    # flags that cannot change an --init model: its record says what the model is instead
    first, out = _train_on(small_bundle, tmp_path / "more.pt", hidden_dim=64, min_freq=9)
    before, vocab, first_ckpt = load_checkpoint(first["out"])
    after, vocab2, ckpt = load_checkpoint(out)
    assert vocab2 == vocab and ckpt["train"]["init"] == first["out"]
    assert after.cfg.hidden_dim == before.cfg.hidden_dim == ckpt["train"]["hidden_dim"] != 64
    assert ckpt["train"]["min_freq"] == first["min_freq"] != 9
    # the bundle's provenance keeps the first stage's settings and scores
    made = _provenance(ExportConfig(checkpoint=str(out), out=str(tmp_path / "b")), ckpt)
    assert made["trained_from"]["checkpoint"] == first["out"]
    assert made["trained_from"]["metrics"] == first_ckpt["metrics"]
    assert made["trained_from"]["train"]["epochs"] == first["epochs"] == 4
    assert made["train_config"]["epochs"] == 1 and "from" not in first_ckpt


def test_training_continues_from_a_bundle_folder_without_its_checkpoint(small_bundle, tmp_path):
    """`--init BUNDLE`: a shipped model trains on when its checkpoint is gone. The weights read
    back are the checkpoint's as the export rounded them, with its vocabulary and min_freq,
    and the new run records the bundle and the stages before it."""
    import torch

    from export.model import round_trained_weights_fp16
    from export.train import load_checkpoint

    first = json.loads((small_bundle / "manifest.json").read_text())["provenance"]["train_config"]
    exported, vocab, _ = load_checkpoint(first["out"])
    round_trained_weights_fp16(exported)
    read, vocab2, meta = load_checkpoint(small_bundle)
    assert vocab2 == vocab and meta["train"]["min_freq"] == first["min_freq"]
    want, got = exported.trainable_state(), read.trainable_state()
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
    _, out = _train_on(small_bundle, tmp_path / "more.pt", init=str(small_bundle))
    model, vocab3, ckpt = load_checkpoint(out)
    assert vocab3 == vocab and ckpt["from"]["checkpoint"] == str(small_bundle)
    assert ckpt["from"]["metrics"] == meta["metrics"]
    assert not torch.equal(model.decoder.fc.weight, read.decoder.fc.weight)


def test_self_critical_training_moves_the_decoder_and_keeps_the_vocabulary(
    small_bundle, tmp_path, capsys
):
    import torch

    from export.train import load_checkpoint

    first, out = _train_on(small_bundle, tmp_path / "scst.pt", lr=1e-4, scst=3)
    before, vocab, _ = load_checkpoint(first["out"])
    after, vocab2, ckpt = load_checkpoint(out)
    assert vocab2 == vocab and ckpt["train"]["scst"] == 3
    assert not torch.equal(before.decoder.fc.weight, after.decoder.fc.weight)
    assert torch.equal(before.backbone._conv_head.weight, after.backbone._conv_head.weight)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1:")][0]
    reward = float(line.split("reward (CIDEr-D) ")[1].split()[0].rstrip(","))
    assert 0.0 < reward < 10.0


def test_self_critical_training_needs_a_trained_model(tmp_path):
    r = run_cli("export", "train", "--train", str(tmp_path), "--scst", "5")
    assert r.returncode == 2
    assert r.stderr.startswith("error: --scst 5: sample 2 or more captions per image, from a")
    assert "--init CHECKPOINT" in r.stderr


def test_unknown_caption_choice_is_refused(tmp_path):
    r = run_cli("export", "train", "--train", str(tmp_path), "--captions", "some")
    assert r.returncode == 2
    assert r.stderr == "error: --captions 'some': choose first or all\n"


@pytest.mark.unit
def test_jpeg_training_view_is_reproducible_and_lossy():
    from export.features import compressed
    from export.scenes import make_scene

    img = make_scene(21, 1)[0]
    a, b = compressed(img, "scene-1.png"), compressed(img, "scene-1.png")
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8
    error = np.abs(a.astype(int) - img.astype(int)).mean()
    assert 0.5 < error < 12  # compression artefacts, not a different picture

"""Graph clean-ups applied to the fp32 export, so every precision derived from it gains them.

fold_pads: the backbone's stride-2 convolutions use TensorFlow 'SAME' padding (one extra pixel
right/bottom), which torch writes as a Pad node before a Conv with no padding. ONNX Conv takes
asymmetric pads, so the Pad folds into it: the same arithmetic, without a copy of the
activation map per stride-2 layer (and without a float island between int8 convolutions).

store_weights_as_fp16: half the bytes on disk for the float weights an int8 graph keeps,
computed in fp32 all the same.

externalize_weights / share_weights: the fp32 graph's weights go to one external-data file, and
the fp16 graph reads the same bytes with a Cast to fp16, so a bundle holds each weight once.

store_exact_fp16: the fp32 graph keeps each weight whose every value is an fp16 value (all the
trained ones and the backbone's folded convolutions are: export.model.fold_batchnorm_fp16) as
fp16 bytes with a Cast back to fp32, which ONNX Runtime folds at load. It computes bit for bit
what it computed before from half the bytes, and the fp16 graph then reads them with no Cast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from runtime.model.prune import without_outputs


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """tensor name -> the nodes that take it as an input."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _constants(model: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    """Values of tensors computed from constants only (torch writes each Pad's amounts as a
    small Constant/Reshape/Slice/Cast chain): ONNX Runtime evaluates them once, on zero inputs."""
    if not names:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    feeds = {}
    for inp in probe.graph.input:
        t = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
        feeds[inp.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(t.elem_type))
    import onnxruntime as ort  # the exporter's own dependency, needed only here

    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, feeds)))


def fold_pads(model: onnx.ModelProto) -> int:
    """Merges each constant zero Pad on H and W into the Conv that alone reads it. Returns how
    many were folded; the graph is changed in place and left valid (unused nodes removed)."""
    graph = model.graph
    readers = _readers(graph)
    candidates = [n for n in graph.node if n.op_type == "Pad" and len(n.input) >= 2]
    values = _constants(model, sorted({i for n in candidates for i in n.input[1:] if i}))
    folded = []
    for pad in candidates:
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        pads = values[pad.input[1]]
        value = values[pad.input[2]] if len(pad.input) > 2 and pad.input[2] else 0
        users = readers.get(pad.output[0], [])
        if (
            mode != "constant"
            or np.any(value != 0)
            or len(users) != 1
            or users[0].op_type != "Conv"
            or pads.size != 8
            or np.any(pads[[0, 1, 4, 5]] != 0)
            or pad.output[0] in {o.name for o in graph.output}
        ):
            continue
        conv = users[0]
        attr = next((a for a in conv.attribute if a.name == "pads"), None)
        before = list(attr.ints) if attr is not None else [0, 0, 0, 0]
        top, left, bottom, right = (int(p) for p in pads[[2, 3, 6, 7]])
        merged = [before[0] + top, before[1] + left, before[2] + bottom, before[3] + right]
        if attr is None:
            conv.attribute.append(helper.make_attribute("pads", merged))
        else:
            del attr.ints[:]
            attr.ints.extend(merged)
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    model.ParseFromString(without_outputs(model.SerializeToString()))  # the Pads' amounts
    return len(folded)


def fold_pads_file(src: Path, dst: Path | None = None) -> int:
    """fold_pads on the graph at `src`, written to `dst` (default: back to `src`)."""
    model = onnx.load(str(src))
    folded = fold_pads(model)
    onnx.save(model, str(dst or src))
    return folded


def store_weights_as_fp16(path: Path, min_elements: int = 4096) -> int:
    """Keeps every large float weight (the float-kept nodes of an int8 graph) as fp16 on disk
    with a Cast back to fp32: ONNX Runtime folds the Cast when it loads the graph, so they
    compute in fp32 from the fp16 values. Returns the bytes saved."""
    model = onnx.load(str(path))
    users = _readers(model.graph)
    saved = 0
    for init in list(model.graph.initializer):
        readers = users.get(init.name, [])
        if (
            init.data_type != onnx.TensorProto.FLOAT
            or int(np.prod(init.dims)) < min_elements
            or not readers
            or any(r.op_type in ("QuantizeLinear", "DequantizeLinear") for r in readers)
        ):
            continue
        saved += _keep_as_fp16(model.graph, init, numpy_helper.to_array(init))
    onnx.save(model, str(path))
    return saved


def _keep_as_fp16(graph: onnx.GraphProto, init: onnx.TensorProto, value: np.ndarray) -> int:
    """Replaces the float initializer by its fp16 bytes (`<name>_fp16`) and a Cast back to fp32
    under its own name, which ONNX Runtime folds at load. Returns the bytes saved."""
    half = numpy_helper.from_array(value.astype(np.float16), init.name + "_fp16")
    graph.initializer.remove(init)
    graph.initializer.append(half)
    graph.node.insert(
        0,
        helper.make_node(
            "Cast", [half.name], [init.name], name=init.name + "_to_fp32", to=onnx.TensorProto.FLOAT
        ),
    )
    return 2 * value.size


def _fp16_exact(value: np.ndarray) -> bool:
    """Whether every value survives fp32 -> fp16 -> fp32 bit for bit (no overflow, no rounding)."""
    with np.errstate(over="ignore"):
        back = value.astype(np.float16).astype(np.float32)
    return bool(np.array_equal(back.view(np.uint32), np.ascontiguousarray(value).view(np.uint32)))


def store_exact_fp16(path: Path, min_elements: int = 256) -> int:
    """Stores each float initializer of `min_elements` or more whose values are all fp16 values
    as fp16 (`<name>_fp16`) with a Cast back to fp32 under its own name: a lossless halving of
    the graph's weights. Others (folded biases, computed constants) stay fp32. Returns the
    bytes saved."""
    model = onnx.load(str(path))
    saved = 0
    for init in list(model.graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        value = numpy_helper.to_array(init)
        if _fp16_exact(value):
            saved += _keep_as_fp16(model.graph, init, value)
    onnx.save(model, str(path))
    return saved


def externalize_weights(path: Path, weights: str, min_bytes: int = 1024) -> None:
    """Moves the graph's initializers of `min_bytes` or more into the file `weights` beside it
    (ONNX external data, one file)."""
    model = onnx.load(str(path))
    (path.parent / weights).unlink(missing_ok=True)  # onnx appends to an existing file
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=weights,
        size_threshold=min_bytes,
    )
    (path.parent / weights).chmod(path.stat().st_mode & 0o777)  # onnx creates it owner-only


def share_weights(fp16_path: Path, fp32_path: Path) -> int:
    """Points the fp16 graph at the fp32 graph's external weights: each fp16 initializer whose
    fp32 twin (same name) lives there and casts to the very same fp16 values becomes a
    reference to the twin's bytes plus a Cast to fp16, which ONNX Runtime folds when it loads
    the graph; a twin the conversion kept in fp32 is referenced as it is. The exported weights
    are fp16 values already (export.model.round_trained_weights_fp16 and the backbone's fp16
    fold), so nothing changes but where the bytes live. Returns the bytes the fp16 graph no
    longer carries."""
    outside = {
        t.name: t
        for t in onnx.load(str(fp32_path), load_external_data=False).graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }
    model = onnx.load(str(fp16_path))
    graph, moved, casts = model.graph, 0, []
    for init in list(graph.initializer):
        twin = outside.get(init.name)
        half = twin is None  # stored as fp16 by store_exact_fp16?
        twin = outside.get(init.name + "_fp16") if half else twin
        if twin is None:
            continue
        value, ref = numpy_helper.to_array(init), onnx.TensorProto()
        ref.CopyFrom(twin)
        stored = numpy_helper.to_array(twin, base_dir=str(fp32_path.parent))  # read from the file
        to = None  # the Cast the reference needs, if any
        if (
            half
            and init.data_type == onnx.TensorProto.FLOAT16
            and np.array_equal(value.view(np.uint16), stored.view(np.uint16))
        ):
            ref.name = init.name  # the very bytes it needs
        elif (
            half
            and init.data_type == onnx.TensorProto.FLOAT
            and np.array_equal(value.view(np.uint32), stored.astype(np.float32).view(np.uint32))
        ):
            to = onnx.TensorProto.FLOAT  # kept in fp32 by the conversion: cast back up
        elif (
            not half
            and init.data_type == onnx.TensorProto.FLOAT
            and np.array_equal(value.view(np.uint32), stored.view(np.uint32))
        ):
            pass  # kept in fp32 by the conversion: the same tensor
        elif (
            not half
            and init.data_type == onnx.TensorProto.FLOAT16
            and np.array_equal(value.view(np.uint16), stored.astype(np.float16).view(np.uint16))
        ):
            ref.name, to = init.name + "_fp32", onnx.TensorProto.FLOAT16
        else:
            continue
        if to is not None:
            suffix = "_to_fp16" if to == onnx.TensorProto.FLOAT16 else "_to_fp32"
            casts.append(
                helper.make_node("Cast", [ref.name], [init.name], name=init.name + suffix, to=to)
            )
        moved += len(init.raw_data) or value.nbytes
        graph.initializer.remove(init)
        graph.initializer.append(ref)
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    fp16_path.write_bytes(model.SerializeToString())  # the external bytes are the fp32 graph's
    return moved

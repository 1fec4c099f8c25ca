"""runtime/model/wire.py: the ONNX protobuf read and edited without `onnx`, checked against the
bundle's own graphs and against `onnx` itself where it is installed; and the modules that edit
graphs use only its public names."""

from __future__ import annotations

import ast

import pytest
from conftest import MODEL, ROOT

from runtime.model import io_spec, wire

pytestmark = pytest.mark.unit


def _graph(name: str = io_spec.ENCODER) -> bytes:
    return (MODEL / io_spec.graph_file("int8", name)).read_bytes()


def test_varints_round_trip():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        data = memoryview(wire.varint(n))
        assert wire.read_varint(data, 0) == (n, len(data))
    with pytest.raises(wire.Malformed, match="truncated varint"):
        wire.read_varint(memoryview(b"\x80"), 0)


def test_fields_as_written_rebuild_the_model():
    data = _graph()
    assert b"".join(raw for _, _, raw in wire.raw_fields(memoryview(data))) == data
    graph = wire.graph(data)
    assert b"".join(raw for _, _, raw in wire.raw_fields(graph)) == bytes(graph)


def test_the_graph_is_read_as_onnx_reads_it():
    onnx = pytest.importorskip("onnx")
    data = _graph()
    model = onnx.load_from_string(data)
    assert wire.graph_outputs(data) == [o.name for o in model.graph.output]
    assert [(n.op_type, n.inputs, n.outputs) for n in wire.nodes(data)] == [
        (n.op_type, list(n.input), list(n.output)) for n in model.graph.node
    ]
    assert wire.declared(data).opsets == {o.domain: o.version for o in model.opset_import}


def test_outputs_added_are_graph_outputs():
    data = _graph(io_spec.DECODER)
    added = wire.with_outputs(data, ["a", "b"])
    assert wire.graph_outputs(added) == wire.graph_outputs(data) + ["a", "b"]
    assert wire.with_outputs(data, []) == data


def test_a_truncated_model_is_malformed():
    with pytest.raises(wire.Malformed):
        wire.declared(_graph()[:1000])


def test_graph_editors_use_only_wires_public_names():
    private = []
    for name in ("onnx_check", "prune", "where", "captioner"):
        path = ROOT / "runtime" / "model" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runtime."):
                private += [
                    f"{name}.py: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and isinstance(node.value, ast.Name)
                and node.value.id == "wire"
            ):
                private.append(f"{name}.py: wire.{node.attr}")
    assert not private, "\n".join(private)

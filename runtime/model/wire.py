"""The ONNX protobuf wire format, read and edited without the `onnx` package (the runtime has
none): a message's fields, a model's graph, its nodes and outputs, outputs added to it, and
what a model file declares (opsets and external-data locations).

    for number, wire_type, value in fields(memoryview(data)): ...
    model = with_outputs(model, ["/features/Relu6_output_0"])

Field numbers are onnx.proto3's. Bytes that are not a valid message raise `Malformed`. What the
edits mean (which nodes an output needs, which tensors the objects head reads) is for the
modules that use this one: runtime.model.prune, runtime.model.where, runtime.model.onnx_check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# field numbers from onnx.proto3
MODEL_GRAPH, MODEL_OPSET, MODEL_FUNCTIONS = 7, 8, 25
OPSET_DOMAIN, OPSET_VERSION = 1, 2
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_SPARSE = 1, 5, 11, 12, 15
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 4, 5
FUNCTION_NODE = 7
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_EXTERNAL = 8, 13
ENTRY_KEY, ENTRY_VALUE = 1, 2
VALUE_INFO_NAME = 1
# wire types
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

MAX_DEPTH = 16  # nested subgraphs followed at most this deep


class Malformed(Exception):
    """Bytes that are not the protobuf message they should be (truncated, or a wire type ONNX
    does not use)."""


def read_varint(buf: memoryview, i: int) -> tuple[int, int]:
    """(the varint at buf[i], the offset after it)."""
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise Malformed("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message: ints for varints, views
    for length-delimited fields, None for fixed-width ones."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == VARINT:
            value, i = read_varint(buf, i)
        elif wire == LENGTH_DELIMITED:
            n, i = read_varint(buf, i)
            if i + n > len(buf):
                raise Malformed("field runs past the end")
            value, i = buf[i : i + n], i + n
        elif wire in (FIXED64, FIXED32):
            i += 8 if wire == FIXED64 else 4
            value = None
        else:
            raise Malformed(f"wire type {wire}")
        if i > len(buf):
            raise Malformed("truncated field")
        yield number, wire, value


def raw_fields(buf: memoryview) -> Iterator[tuple[int, Any, bytes]]:
    """(field number, value, the field's bytes as written, key included) of each field of one
    message: what an edit copies through unchanged."""
    i = 0
    for number, wire, value in fields(buf):
        _, j = read_varint(buf, i)  # the key
        if wire == VARINT:
            _, j = read_varint(buf, j)
        elif wire == LENGTH_DELIMITED:
            n, j = read_varint(buf, j)
            j += n
        else:
            j += 8 if wire == FIXED64 else 4
        yield number, value, bytes(buf[i:j])
        i = j


def strings(buf: memoryview, number: int) -> list[str]:
    """Every value of the (repeated) string field `number` of one message, in order."""
    return [bytes(v).decode() for n, _, v in fields(buf) if n == number]


def varint(n: int) -> bytes:
    """n (>= 0) as a varint."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field `number` holding `payload` (bytes, a string or a message), as written."""
    return varint(number << 3 | LENGTH_DELIMITED) + varint(len(payload)) + payload


def graph(model: bytes) -> memoryview:
    """The GraphProto of a ModelProto."""
    found = next((v for n, _, v in fields(memoryview(model)) if n == MODEL_GRAPH), None)
    if found is None:
        raise Malformed("no graph")
    return found


def edit_graph(model: bytes, edit: Callable[[memoryview], bytes]) -> bytes:
    """The model with its graph replaced by edit(graph); every other field as it was."""
    out = bytearray()
    for number, value, raw in raw_fields(memoryview(model)):
        out += length_delimited(MODEL_GRAPH, edit(value)) if number == MODEL_GRAPH else raw
    return bytes(out)


@dataclass(frozen=True)
class Node:
    """One NodeProto of a graph, by the names it reads and writes."""

    op_type: str  # "Gemm", "GlobalAveragePool", ...
    inputs: list[str]  # "" for an optional input left out
    outputs: list[str]


def nodes(model: bytes) -> list[Node]:
    """The nodes of the model's graph (not of its subgraphs), in the order written."""
    out = []
    for n, _, v in fields(graph(model)):
        if n == GRAPH_NODE:
            op = next((bytes(x).decode() for k, _, x in fields(v) if k == NODE_OP_TYPE), "")
            out.append(Node(op, strings(v, NODE_INPUT), strings(v, NODE_OUTPUT)))
    return out


def has_subgraph(node: memoryview) -> bool:
    """Whether a NodeProto has a graph attribute (If, Loop, Scan), which may read any tensor
    of the outer graph by name."""
    return any(
        a in (ATTR_G, ATTR_GRAPHS)
        for n, _, v in fields(node)
        if n == NODE_ATTRIBUTE
        for a, _, _ in fields(v)
    )


def graph_outputs(model: bytes) -> list[str]:
    """The names of the graph's outputs, in order."""
    return [strings(v, VALUE_INFO_NAME)[0] for n, _, v in fields(graph(model)) if n == GRAPH_OUTPUT]


def with_outputs(model: bytes, names: list[str]) -> bytes:
    """The model with these (intermediate) tensors added to its graph outputs, untyped: ONNX
    Runtime infers their types."""

    def add(buf: memoryview) -> bytes:
        out = bytes(buf)
        for name in names:
            out += length_delimited(GRAPH_OUTPUT, length_delimited(VALUE_INFO_NAME, name.encode()))
        return out

    return edit_graph(model, add)


@dataclass(frozen=True)
class Declared:
    """What an ONNX model declares of its needs: opsets and external-data files."""

    opsets: dict[str, int]  # domain ("" = ONNX) -> version
    external: list[tuple[str, str]]  # (tensor, location) of each tensor stored outside


def declared(model: bytes | memoryview) -> Declared:
    """The opsets and external-data locations of a ModelProto, visiting only the messages that
    can hold tensors (graph initializers, node attributes, subgraphs, functions) and skipping
    tensor bytes by their length."""
    out = Declared({}, [])
    for number, wire, value in fields(memoryview(model)):
        if number == MODEL_GRAPH and wire == LENGTH_DELIMITED:
            _graph_tensors(value, out, 0)
        elif number == MODEL_OPSET and wire == LENGTH_DELIMITED:
            entry = dict((n, v) for n, _, v in fields(value))
            domain = bytes(entry.get(OPSET_DOMAIN, b"")).decode(errors="replace")
            out.opsets[domain] = int(entry.get(OPSET_VERSION) or 0)
        elif number == MODEL_FUNCTIONS and wire == LENGTH_DELIMITED:
            for n, w, v in fields(value):
                if n == FUNCTION_NODE and w == LENGTH_DELIMITED:
                    _node_tensors(v, out, 1)
    return out


def _tensor(buf: memoryview, out: Declared) -> None:
    name = ""
    for number, wire, value in fields(buf):
        if number == TENSOR_NAME and wire == LENGTH_DELIMITED:
            name = bytes(value).decode(errors="replace")
        elif number == TENSOR_EXTERNAL and wire == LENGTH_DELIMITED:
            entry = {
                n: bytes(v).decode(errors="replace")
                for n, w, v in fields(value)
                if w == LENGTH_DELIMITED
            }
            if entry.get(ENTRY_KEY) == "location":
                out.external.append((name, entry.get(ENTRY_VALUE, "")))


def _sparse(buf: memoryview, out: Declared) -> None:
    for number, wire, value in fields(buf):
        if number in (SPARSE_VALUES, SPARSE_INDICES) and wire == LENGTH_DELIMITED:
            _tensor(value, out)


def _node_tensors(buf: memoryview, out: Declared, depth: int) -> None:
    """A NodeProto: tensors and subgraphs in its attributes."""
    for number, wire, value in fields(buf):
        if number != NODE_ATTRIBUTE or wire != LENGTH_DELIMITED:
            continue
        for a, w, v in fields(value):
            if w != LENGTH_DELIMITED:
                continue
            if a in (ATTR_T, ATTR_TENSORS):
                _tensor(v, out)
            elif a in (ATTR_G, ATTR_GRAPHS):
                _graph_tensors(v, out, depth + 1)
            elif a in (ATTR_SPARSE, ATTR_SPARSES):
                _sparse(v, out)


def _graph_tensors(buf: memoryview, out: Declared, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Malformed(f"subgraphs nested deeper than {MAX_DEPTH}")
    for number, wire, value in fields(buf):
        if wire != LENGTH_DELIMITED:
            continue
        if number == GRAPH_INITIALIZER:
            _tensor(value, out)
        elif number == GRAPH_SPARSE:
            _sparse(value, out)
        elif number == GRAPH_NODE:
            _node_tensors(value, out, depth)

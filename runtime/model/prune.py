"""A graph without some of its outputs, and without the nodes and initializers only they
needed, edited in the protobuf wire format (the runtime has no `onnx` package).

The benchmark uses it to time the encoder with and without the objects head: ONNX Runtime runs
every node of a graph whatever outputs a call asks for, so the head's cost shows only against
the same graph with the head cut away. The exporter uses it to drop what a graph edit left
unused (export.optimize.fold_pads).
"""

from __future__ import annotations

from runtime.model.onnx_check import (ATTR_G, ATTR_GRAPHS, GRAPH_INITIALIZER, GRAPH_NODE,
                                      MODEL_GRAPH, NODE_ATTRIBUTE, TENSOR_NAME, _fields, _varint)

GRAPH_INPUT, GRAPH_OUTPUT = 11, 12
NODE_INPUT, NODE_OUTPUT = 1, 2
VALUE_INFO_NAME = 1


def _raw(buf: memoryview):
    """(field number, value, the field's bytes as written) of one message."""
    i = 0
    for number, wire, value in _fields(buf):
        _, j = _varint(buf, i)  # the key
        if wire == 0:
            _, j = _varint(buf, j)
        elif wire == 2:
            n, j = _varint(buf, j)
            j += n
        else:
            j += 8 if wire == 1 else 4
        yield number, value, bytes(buf[i:j])
        i = j


def _strings(buf: memoryview, number: int) -> list[str]:
    return [bytes(v).decode() for n, _, v in _fields(buf) if n == number]


def without_outputs(model: bytes, drop: set[str] = frozenset()) -> bytes:
    """The model with the graph outputs in `drop` removed and every node and initializer that no
    remaining output depends on removed with them (with `drop` empty: only what is already
    unused). Initializers stay where a node has a subgraph, which may read them by name."""
    out = bytearray()
    for number, value, raw in _raw(memoryview(model)):
        if number != MODEL_GRAPH:
            out += raw
            continue
        graph = _graph_without(value, drop)
        out += _key(MODEL_GRAPH) + _len(len(graph)) + graph
    return bytes(out)


def _graph_without(buf: memoryview, drop: set[str]) -> bytes:
    fields = list(_raw(buf))
    outputs = {k: _strings(v, VALUE_INFO_NAME)[0] for k, (n, v, _) in enumerate(fields) if n == GRAPH_OUTPUT}
    dropped = {k for k, name in outputs.items() if name in drop}
    needed = {name for k, name in outputs.items() if k not in dropped}
    nodes = {k: (_strings(v, NODE_INPUT), _strings(v, NODE_OUTPUT))
             for k, (n, v, _) in enumerate(fields) if n == GRAPH_NODE}
    live: set[int] = set()
    grew = True
    while grew:  # to a fixed point: converters append nodes out of topological order
        grew = False
        for k, (inputs, outputs) in nodes.items():
            if k not in live and any(o in needed for o in outputs):
                live.add(k)
                needed.update(i for i in inputs if i)
                grew = True
    graph_inputs = {_strings(v, VALUE_INFO_NAME)[0] for n, v, _ in fields if n == GRAPH_INPUT}
    subgraphs = any(_has_subgraph(fields[k][1]) for k in live)
    unused = set() if subgraphs else {
        k for k, (n, v, _) in enumerate(fields) if n == GRAPH_INITIALIZER
        and (name := _strings(v, TENSOR_NAME)[0]) not in needed and name not in graph_inputs}
    out = bytearray()
    for k, (n, v, r) in enumerate(fields):
        if (n == GRAPH_NODE and k not in live) or k in dropped or k in unused:
            continue
        out += r
    return bytes(out)


def _has_subgraph(node: memoryview) -> bool:
    return any(a in (ATTR_G, ATTR_GRAPHS) for n, _, v in _fields(node) if n == NODE_ATTRIBUTE
               for a, _, _ in _fields(v))


def _key(number: int) -> bytes:
    return _len(number << 3 | 2)


def _len(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

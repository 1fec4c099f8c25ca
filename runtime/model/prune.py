"""A graph without some of its outputs, and without the nodes and initializers only they
needed, edited in the protobuf wire format (runtime.model.wire: the runtime has no `onnx`
package).

The benchmark uses it to time the encoder with and without the objects head: ONNX Runtime runs
every node of a graph whatever outputs a call asks for, so the head's cost shows only against
the same graph with the head cut away. The exporter uses it to drop what a graph edit left
unused (export.optimize.fold_pads).
"""

from __future__ import annotations

from collections.abc import Set

from runtime.model import wire


def without_outputs(model: bytes, drop: Set[str] = frozenset()) -> bytes:
    """The model with the graph outputs in `drop` removed and every node and initializer that no
    remaining output depends on removed with them (with `drop` empty: only what is already
    unused). Initializers stay where a node has a subgraph, which may read them by name."""
    return wire.edit_graph(model, lambda graph: _graph_without(graph, drop))


def _graph_without(buf: memoryview, drop: Set[str]) -> bytes:
    fields = list(wire.raw_fields(buf))
    outputs = {
        k: wire.strings(v, wire.VALUE_INFO_NAME)[0]
        for k, (n, v, _) in enumerate(fields)
        if n == wire.GRAPH_OUTPUT
    }
    dropped = {k for k, name in outputs.items() if name in drop}
    needed = {name for k, name in outputs.items() if k not in dropped}
    nodes = {
        k: (wire.strings(v, wire.NODE_INPUT), wire.strings(v, wire.NODE_OUTPUT))
        for k, (n, v, _) in enumerate(fields)
        if n == wire.GRAPH_NODE
    }
    live: set[int] = set()
    grew = True
    while grew:  # to a fixed point: converters append nodes out of topological order
        grew = False
        for k, (inputs, outs) in nodes.items():
            if k not in live and any(o in needed for o in outs):
                live.add(k)
                needed.update(i for i in inputs if i)
                grew = True
    graph_inputs = {
        wire.strings(v, wire.VALUE_INFO_NAME)[0] for n, v, _ in fields if n == wire.GRAPH_INPUT
    }
    subgraphs = any(wire.has_subgraph(fields[k][1]) for k in live)
    unused = (
        set()
        if subgraphs
        else {
            k
            for k, (n, v, _) in enumerate(fields)
            if n == wire.GRAPH_INITIALIZER
            and (name := wire.strings(v, wire.TENSOR_NAME)[0]) not in needed
            and name not in graph_inputs
        }
    )
    out = bytearray()
    for k, (n, _, r) in enumerate(fields):
        if (n == wire.GRAPH_NODE and k not in live) or k in dropped or k in unused:
            continue
        out += r
    return bytes(out)

"""Where things are: class activation maps from the encoder's own 7x7 map, at almost no cost.

The ImageNet head is linear after a global average pool, so class k's logit is the mean over
the 49 regions of w_k . f_r + b_k: w_k . f_r is class k's evidence in region r. The encoder
graph computes f (its last map, 1280x7x7) anyway; `with_map()` adds it to the graph's outputs
(an edit of the protobuf, like runtime/model/prune.py: the runtime has no `onnx` package), and the
head's weights are read once from the graph itself. A named object is then placed by where its
evidence lies across the frame's width:

    left | ahead | right       the third of the frame its evidence's centre falls in

The frame is stretched whole to 224x224, so a share of the width is the same in the frame.
"""

from __future__ import annotations

import numpy as np

from runtime.model import io_spec
from runtime.model.onnx_check import GRAPH_NODE, MODEL_GRAPH, _fields
from runtime.model.prune import (GRAPH_OUTPUT, NODE_INPUT, NODE_OUTPUT, VALUE_INFO_NAME, _key, _len,
                                 _raw, _strings, without_outputs)

NODE_OP_TYPE = 4
WHERE = ("left", "ahead", "right")
CLOCK = {"left": 10, "ahead": 12, "right": 2}


def third(x0: float, x1: float, width: int) -> str:
    """left / ahead / right: the third of the frame the centre of [x0, x1] falls in (a text
    line's box, or the centre of an object's evidence)."""
    centre = (x0 + x1) / 2 / max(width, 1)
    return WHERE[min(2, max(0, int(centre * 3)))]


def place(where: str, style: str = "words") -> str:
    """'on your left' / 'ahead' / 'on your right', or '10 o'clock' with style 'clock'."""
    if style == "clock":
        return f"at {CLOCK[where]} o'clock"
    return "ahead" if where == "ahead" else f"on your {where}"


def _nodes(model: bytes) -> list[tuple[str, list[str], list[str]]]:
    graph = next(v for n, _, v in _fields(memoryview(model)) if n == MODEL_GRAPH)
    out = []
    for n, _, v in _fields(graph):
        if n == GRAPH_NODE:
            op = next((bytes(x).decode() for k, _, x in _fields(v) if k == NODE_OP_TYPE), "")
            out.append((op, _strings(v, NODE_INPUT), _strings(v, NODE_OUTPUT)))
    return out


def head_tensors(model: bytes) -> tuple[str, str] | None:
    """(the map the ImageNet head pools, the head's weight as its Gemm reads it), found by
    walking back from the objects output; None for a graph without the head."""
    producer = {o: (op, ins) for op, ins, outs in _nodes(model) for o in outs}
    name, weight = io_spec.OBJECTS, None
    for _ in range(32):
        if name not in producer:
            return None
        op, ins = producer[name]
        if op == "Gemm" and weight is None:
            weight = ins[1]
        if op in ("GlobalAveragePool", "ReduceMean"):
            return (ins[0], weight) if weight else None
        name = ins[0]
    return None


def with_outputs(model: bytes, names: list[str]) -> bytes:
    """The model with these (intermediate) tensors added to its graph outputs, untyped: ONNX
    Runtime infers their types."""
    out = bytearray()
    for number, value, raw in _raw(memoryview(model)):
        if number != MODEL_GRAPH:
            out += raw
            continue
        graph = bytes(value)
        for name in names:
            vi = _key(VALUE_INFO_NAME) + _len(len(name.encode())) + name.encode()
            graph += _key(GRAPH_OUTPUT) + _len(len(vi)) + vi
        out += _key(MODEL_GRAPH) + _len(len(graph)) + graph
    return bytes(out)


def only(model: bytes, name: str) -> bytes:
    """The model computing nothing but tensor `name` (the head's weight): run once at load."""
    return without_outputs(with_outputs(model, [name]), set(_graph_outputs(model)))


def _graph_outputs(model: bytes) -> list[str]:
    graph = next(v for n, _, v in _fields(memoryview(model)) if n == MODEL_GRAPH)
    return [_strings(v, VALUE_INFO_NAME)[0] for n, _, v in _fields(graph) if n == GRAPH_OUTPUT]


class Locator:
    """Places named objects from the head's weights (1000,1280) and a frame's map (1280,7,7)."""

    def __init__(self, weight: np.ndarray, names: tuple[str, ...]):
        self.weight = np.asarray(weight, dtype=np.float32)
        self.names = names  # spoken name of each class
        self.classes: dict[str, list[int]] = {}
        for k, n in enumerate(names):
            self.classes.setdefault(n, []).append(k)

    def evidence(self, fmap: np.ndarray, logits: np.ndarray, name: str) -> np.ndarray:
        """(7,7) evidence for `name`: the activation map of its most likely class, its
        positive part."""
        ks = self.classes[name]
        k = ks[int(np.argmax(np.asarray(logits)[ks]))]
        f = np.asarray(fmap, dtype=np.float32).reshape(fmap.shape[0], -1)  # (1280,49)
        cam = (self.weight[k] @ f).reshape(fmap.shape[1:])
        return np.maximum(cam - cam.mean(), 0)

    def where(self, fmap: np.ndarray, logits: np.ndarray, name: str) -> str:
        cam = self.evidence(fmap, logits, name)
        cols = cam.sum(axis=0)
        if cols.sum() <= 0:
            return "ahead"
        x = float((cols * (np.arange(len(cols)) + 0.5)).sum() / cols.sum()) / len(cols)
        return third(x, x, 1)


"""Where things are: class activation maps from the encoder's own 7x7 map, at almost no cost.

The ImageNet head is linear after a global average pool, so class k's logit is the mean over
the 49 regions of w_k . f_r + b_k: w_k . f_r is class k's evidence in region r. The encoder
graph computes f (its last map, 1280x7x7) anyway; the captioner adds it to the graph's outputs
(runtime.model.wire.with_outputs: the runtime has no `onnx` package), and the head's weights
are read once from the graph itself (`head_tensors`, `only`). A named object is then placed by
the centre of its evidence across the frame's width, a share of it from 0 (the left edge) to
1 (the right edge); runtime.channels.places says it in words.

The frame is stretched whole to 224x224, so a share of the width is the same in the frame.
"""

from __future__ import annotations

import numpy as np

from runtime.model import io_spec
from runtime.model.prune import without_outputs
from runtime.model.wire import graph_outputs, nodes, with_outputs

AHEAD = 0.5  # the centre of the frame: where a thing without evidence is placed


def head_tensors(model: bytes) -> tuple[str, str] | None:
    """(the map the ImageNet head pools, the head's weight as its Gemm reads it), found by
    walking back from the objects output; None for a graph without the head."""
    producer = {o: (n.op_type, n.inputs) for n in nodes(model) for o in n.outputs}
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


def only(model: bytes, name: str) -> bytes:
    """The model computing nothing but tensor `name` (the head's weight): run once at load."""
    return without_outputs(with_outputs(model, [name]), set(graph_outputs(model)))


class Locator:
    """Places named objects from the head's weights (1000,1280) and a frame's map (1280,7,7)."""

    def __init__(self, weight: np.ndarray, names: tuple[str, ...]):
        self.weight = np.asarray(weight, dtype=np.float32)
        self.names = names  # the bundle's name of each class (Bundle.object_names)
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

    def centre(self, fmap: np.ndarray, logits: np.ndarray, name: str) -> float:
        """The centre of `name`'s evidence across the frame, as a share of its width: 0 at the
        left edge, 1 at the right; AHEAD where there is no evidence."""
        cols = self.evidence(fmap, logits, name).sum(axis=0)
        if cols.sum() <= 0:
            return AHEAD
        return float((cols * (np.arange(len(cols)) + 0.5)).sum() / cols.sum()) / len(cols)

"""TensorFlow's own outputs of a TF.js graph model, the reference its ONNX conversion is checked
against (export/detector.py). It runs in the detector build's interpreter, which has
TensorFlow (requirements/detector.txt), never in the project's: it imports only numpy and
TensorFlow.

    .venv-detector/bin/python -m export.tfjs model.json inputs.npy outputs.npz

The GraphDef is the model.json's modelTopology; each Const gets its tensor from the weight
files, in weightsManifest order, dequantised (fp16, or uint8/uint16 with scale and min) and
cast to the dtype the node declares (TF.js stores int64 constants as int32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    """name -> value of every weight in a TF.js weightsManifest."""
    groups = model["weightsManifest"]
    data = b"".join((folder / p).read_bytes() for g in groups for p in g["paths"])
    out, offset = {}, 0
    for w in (w for g in groups for w in g["weights"]):
        q = w.get("quantization")
        n = int(np.prod(w["shape"], dtype=np.int64))
        raw = np.frombuffer(data, np.dtype(q["dtype"] if q else w["dtype"]), n, offset)
        offset += raw.nbytes
        value = raw * q["scale"] + q["min"] if q and "scale" in q else raw
        out[w["name"]] = value.astype(w["dtype"]).reshape(w["shape"])
    return out


def run_graph(model_json: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's signature outputs for the inputs x (n, ...), computed by TensorFlow one at a
    time (the graphs take a batch of one) and stacked."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    model = json.loads(model_json.read_text())
    graph_def = json_format.ParseDict(
        model["modelTopology"], graph_pb2.GraphDef(), ignore_unknown_fields=True
    )
    weights = read_weights(model, model_json.parent)
    for node in graph_def.node:
        if node.op == "Const":
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(weights[node.name].astype(dtype))
            )
    (name,), outputs = model["signature"]["inputs"], list(model["signature"]["outputs"])
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            runs = [session.run(outputs, {name: x[i : i + 1]}) for i in range(len(x))]
    return {o: np.concatenate([r[k] for r in runs]) for k, o in enumerate(outputs)}


if __name__ == "__main__":
    model_json, inputs, out = map(Path, sys.argv[1:4])
    np.savez(out, **run_graph(model_json, np.load(inputs)))

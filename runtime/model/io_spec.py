"""The ONNX contract, as data: graph file names, tensor names, dtypes and named axes.

encoder.<precision>.onnx runs once per image; decoder_step.<precision>.onnx runs once per
token, taking and returning the LSTM state. The exporter builds its graphs from these tables and
the runtime feeds them by these names; nothing else in the project spells a tensor name.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")
ENCODER, DECODER = "encoder", "decoder_step"
GRAPHS = (ENCODER, DECODER)


def graph_file(precision: str, graph: str) -> str:
    """Path of a graph inside a bundle, e.g. 'decoder_step.int8.onnx'."""
    return f"{graph}.{precision}.onnx"


def weights_file(graph: str) -> str:
    """The external-data file of a graph's fp32 weights, e.g. 'encoder.weights'. The fp32 graph
    reads it as it is and the fp16 graph casts the same bytes to fp16 when it loads, so a bundle
    holds each weight once. ONNX Runtime resolves external data beside the graph and refuses
    '..', hence one flat folder."""
    return f"{graph}.weights"


# name -> (dtype, axes). Axes are named for documentation; only "batch" is dynamic in the
# graphs, the others are fixed by each bundle's model sizes (recorded in its manifest).
ENCODER_INPUTS = {"image": ("float32", ("batch", 3, 224, 224))}
ENCODER_OUTPUTS = {
    "regions": ("float32", ("batch", "regions", "region_dim")),  # (B,49,D) projected 7x7 map
    "regions_att": ("float32", ("batch", "regions", "attention_dim")),  # (B,49,A) for attention
    "h0": ("float32", ("batch", "hidden_dim")),
    "c0": ("float32", ("batch", "hidden_dim")),
}
# The objects channel: the backbone's own ImageNet head, from the same forward pass. Optional:
# a bundle has it when its manifest's io lists it (bundles exported before it have not).
OBJECTS_OUTPUTS = {"imagenet_logits": ("float32", ("batch", "classes"))}  # (B,1000)
OBJECTS = "imagenet_logits"
DECODER_INPUTS = {
    "token": ("int64", ("batch",)),
    "h": ("float32", ("batch", "hidden_dim")),
    "c": ("float32", ("batch", "hidden_dim")),
    "regions": ENCODER_OUTPUTS["regions"],
    "regions_att": ENCODER_OUTPUTS["regions_att"],
}
DECODER_OUTPUTS = {
    "logits": ("float32", ("batch", "vocab")),
    "h_next": ("float32", ("batch", "hidden_dim")),
    "c_next": ("float32", ("batch", "hidden_dim")),
    "alpha": ("float32", ("batch", "regions")),  # attention weights over the 49 regions
}
INITIAL_STATE = {"h0": "h", "c0": "c"}  # encoder output -> decoder input
STATE = {"h_next": "h", "c_next": "c"}  # decoder output fed back at the next step
CONTEXT = ("regions", "regions_att")  # encoder outputs passed unchanged to every step

SPECS = {  # what the exporter writes
    ENCODER: (ENCODER_INPUTS, {**ENCODER_OUTPUTS, **OBJECTS_OUTPUTS}),
    DECODER: (DECODER_INPUTS, DECODER_OUTPUTS),
}
REQUIRED = {  # what the runtime needs of any bundle
    ENCODER: (ENCODER_INPUTS, ENCODER_OUTPUTS),
    DECODER: (DECODER_INPUTS, DECODER_OUTPUTS),
}


DYNAMIC = ("batch",)


def dynamic_axes(graph: str) -> dict[str, dict[int, str]]:
    """Dynamic axes of a graph, in the form torch.onnx.export takes."""
    inputs, outputs = SPECS[graph]
    return {name: {i: a for i, a in enumerate(axes) if a in DYNAMIC}
            for name, (_, axes) in {**inputs, **outputs}.items()}

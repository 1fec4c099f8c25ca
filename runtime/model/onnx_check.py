"""What an ONNX file declares, read before ONNX Runtime sees it: opsets and external-data paths.

The runtime has no `onnx` package, so this walks the protobuf wire format itself, visiting only
the messages that can hold tensors (graph initializers, node attributes, subgraphs) and
skipping tensor bytes by their length. A bundle graph whose external data lies outside the
bundle (`../../etc/passwd`, `/etc/shadow`) or in any file but the weights file its manifest entry
hashes, or that needs an opset this runtime does not run, is refused with its file named, on any
onnxruntime, old Jetson builds included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import BundleError

OPSETS = range(13, 22)  # default-domain opsets: the exporter writes 17; ORT 1.16 (JetPack 5) runs <= 19+
MAX_DEPTH = 16  # nested subgraphs followed at most this deep

# field numbers from onnx.proto3
MODEL_GRAPH, MODEL_OPSET, MODEL_FUNCTIONS = 7, 8, 25
OPSET_DOMAIN, OPSET_VERSION = 1, 2
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE = 1, 5, 15
NODE_ATTRIBUTE = 5
FUNCTION_NODE = 7
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_EXTERNAL = 8, 13
ENTRY_KEY, ENTRY_VALUE = 1, 2


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) of one message: ints for varints, views for bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise _Malformed("field runs past the end")
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            value = None
        else:
            raise _Malformed(f"wire type {wire}")
        if i > len(buf):
            raise _Malformed("truncated field")
        yield number, wire, value


@dataclass
class GraphInfo:
    opsets: dict[str, int] = field(default_factory=dict)  # domain ("" = ONNX) -> version
    external: list[tuple[str, str]] = field(default_factory=list)  # (tensor, location)


def _tensor(buf: memoryview, info: GraphInfo) -> None:
    name = ""
    for number, wire, value in _fields(buf):
        if number == TENSOR_NAME and wire == 2:
            name = bytes(value).decode(errors="replace")
        elif number == TENSOR_EXTERNAL and wire == 2:
            entry = {n: bytes(v).decode(errors="replace") for n, w, v in _fields(value) if w == 2}
            if entry.get(ENTRY_KEY) == "location":
                info.external.append((name, entry.get(ENTRY_VALUE, "")))


def _sparse(buf: memoryview, info: GraphInfo) -> None:
    for number, wire, value in _fields(buf):
        if number in (SPARSE_VALUES, SPARSE_INDICES) and wire == 2:
            _tensor(value, info)


def _nodes(buf: memoryview, info: GraphInfo, depth: int) -> None:
    """A NodeProto: tensors and subgraphs in its attributes."""
    for number, wire, value in _fields(buf):
        if number != NODE_ATTRIBUTE or wire != 2:
            continue
        for a, w, v in _fields(value):
            if w != 2:
                continue
            if a in (ATTR_T, ATTR_TENSORS):
                _tensor(v, info)
            elif a in (ATTR_G, ATTR_GRAPHS):
                _graph(v, info, depth + 1)
            elif a in (ATTR_SPARSE, ATTR_SPARSES):
                _sparse(v, info)


def _graph(buf: memoryview, info: GraphInfo, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise _Malformed(f"subgraphs nested deeper than {MAX_DEPTH}")
    for number, wire, value in _fields(buf):
        if wire != 2:
            continue
        if number == GRAPH_INITIALIZER:
            _tensor(value, info)
        elif number == GRAPH_SPARSE:
            _sparse(value, info)
        elif number == GRAPH_NODE:
            _nodes(value, info, depth)


def inspect(path: Path) -> GraphInfo:
    """The opsets and external-data locations an ONNX model file declares."""
    info = GraphInfo()
    try:
        buf = memoryview(path.read_bytes())
        for number, wire, value in _fields(buf):
            if number == MODEL_GRAPH and wire == 2:
                _graph(value, info)
            elif number == MODEL_OPSET and wire == 2:
                entry = dict((n, v) for n, _, v in _fields(value))
                domain = bytes(entry.get(OPSET_DOMAIN, b"")).decode(errors="replace")
                info.opsets[domain] = int(entry.get(OPSET_VERSION) or 0)
            elif number == MODEL_FUNCTIONS and wire == 2:
                for n, w, v in _fields(value):
                    if n == FUNCTION_NODE and w == 2:
                        _nodes(v, info, 1)
    except _Malformed as e:
        raise BundleError(f"{path}: not a valid ONNX file ({e})") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read it ({e.strerror or e})") from None
    return info


def check_graph(path: Path, bundle_root: Path, data: Path | None = None) -> None:
    """Refuse a graph whose external data leaves the bundle or is not `data` (the weights file
    the manifest lists, and hashes, for it), or whose opset we cannot run."""
    info = inspect(path)
    root = bundle_root.resolve()
    listed = data.resolve() if data is not None else None
    for tensor, location in info.external:
        try:
            target = (path.parent / location).resolve()
        except (ValueError, OSError):  # a NUL byte, a symlink loop
            raise BundleError(f"{path}: tensor {tensor!r} names its external data {location!r}, "
                              "which is not a usable path") from None
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise BundleError(f"{path}: tensor {tensor!r} points its external data outside the "
                              f"bundle ({location})")
        if target != listed:
            raise BundleError(f"{path}: tensor {tensor!r} reads external data from {location}, "
                              "which the manifest does not list for this graph")
    version = info.opsets.get("", info.opsets.get("ai.onnx"))
    if version is None:
        raise BundleError(f"{path}: declares no ONNX opset")
    if version not in OPSETS:
        raise BundleError(f"{path}: opset {version} is not supported (this runtime runs opsets "
                          f"{OPSETS.start}..{OPSETS.stop - 1})")

"""What an ONNX file declares, checked before ONNX Runtime sees it: opsets and external-data
paths.

The runtime has no `onnx` package, so runtime.model.wire reads the protobuf itself. A bundle
graph whose external data lies outside the bundle (`../../etc/passwd`, `/etc/shadow`) or in any
file but the weights file its manifest entry hashes, or that needs an opset this runtime does
not run (io_spec.OPSETS), is refused with its file named, on any onnxruntime, old Jetson builds
included.
"""

from __future__ import annotations

from pathlib import Path

from runtime.errors import BundleError
from runtime.model import wire
from runtime.model.io_spec import OPSETS


def inspect(path: Path) -> wire.Declared:
    """The opsets and external-data locations an ONNX model file declares."""
    try:
        return wire.declared(path.read_bytes())
    except wire.Malformed as e:
        raise BundleError(f"{path}: not a valid ONNX file ({e})") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot read it ({e.strerror or e})") from None


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
            raise BundleError(
                f"{path}: tensor {tensor!r} names its external data {location!r}, "
                "which is not a usable path"
            ) from None
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise BundleError(
                f"{path}: tensor {tensor!r} points its external data outside the "
                f"bundle ({location})"
            )
        if target != listed:
            raise BundleError(
                f"{path}: tensor {tensor!r} reads external data from {location}, "
                "which the manifest does not list for this graph"
            )
    version = info.opsets.get("", info.opsets.get("ai.onnx"))
    if version is None:
        raise BundleError(f"{path}: declares no ONNX opset")
    if version not in OPSETS:
        raise BundleError(
            f"{path}: opset {version} is not supported (this runtime runs opsets "
            f"{OPSETS.start}..{OPSETS.stop - 1})"
        )

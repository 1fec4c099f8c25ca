"""The ONNX contract lives in runtime/model/io_spec.py alone: no other source file of runtime/ or
export/ spells a tensor name, defines an opset or defines a validation tolerance. Read from the
source with `ast`, so comments and docstrings may name tensors freely."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT

from runtime.model import io_spec

pytestmark = pytest.mark.unit

SPEC = ROOT / "runtime" / "model" / "io_spec.py"

# (file, name) -> (most spellings, why): where a tensor's name is also an ordinary word with
# another meaning there. A file spelling the name more often than this fails.
ALLOWED = {
    ("runtime/app/caption.py", "image"): (1, "the photo's key in a `caption --json` line"),
    ("runtime/app/bench.py", "image"): (1, "the photo's key in a captions.jsonl row"),
    ("runtime/channels/colour.py", "c"): (1, "the key that says the colours"),
    ("export/datasets.py", "image"): (1, "the photo's key in a JSONL dataset row"),
    ("export/scenes.py", "image"): (1, "the photo's key of the JSONL rows it writes"),
    ("export/truth.py", "image"): (
        3,
        "the photo's key in dataset rows, `caption --json` lines and its report's examples",
    ),
    ("export/evaluate.py", "image"): (2, "the photo's key in the rows of its report"),
    ("export/detector.py", "image"): (2, "the photo's key in a dev-list row, and in --dump"),
    ("export/detector.py", "h"): (1, "a photo's height in --dump"),
}


def tensor_names() -> set[str]:
    """Every tensor name io_spec defines, and the prefix a detector output's name starts with
    (what an f-string spelling it holds: f"scores_{s}")."""
    names = {io_spec.OBJECTS, io_spec.FEATURES, io_spec.DETECTOR_INPUT}
    for inputs, outputs in io_spec.SPECS.values():
        names |= set(inputs) | set(outputs)
    names |= set(io_spec.detector_outputs((8, 16, 32, 64)))
    names |= {
        io_spec.detector_output(k, 0)[:-1]
        for k in (io_spec.DETECTOR_SCORES, io_spec.DETECTOR_DISTS)
    }
    return names


def sources() -> list[Path]:
    return sorted(p for d in ("runtime", "export") for p in (ROOT / d).rglob("*.py") if p != SPEC)


def spellings(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each string constant equal to a name, and each keyword of a dict(...)
    call named so (dict(state, h=h) spells "h" too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.append((node.lineno, node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
        ):
            found += [(node.lineno, k.arg) for k in node.keywords if k.arg in names]
    return found


def misspelt(names: set[str]) -> list[str]:
    """'file:line: name' of each spelling outside io_spec that ALLOWED does not cover."""
    wrong = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        found = spellings(path, names)
        count = Counter(name for _, name in found)
        for line, name in found:
            if count[name] > ALLOWED.get((rel, name), (0, ""))[0]:
                wrong.append(f"{rel}:{line}: {name!r}")
    return wrong


def test_the_names_are_io_specs_tables():
    names = tensor_names()
    assert {
        "image",
        "regions_att",
        "imagenet_logits",
        "token",
        "h_next",
        "alpha",
        "scores_8",
        "dists_32",
        "scores_",
    } <= names
    assert "decoder_step" not in names  # graph names are not tensor names


def test_no_tensor_name_is_spelled_outside_io_spec():
    wrong = misspelt(tensor_names())
    assert not wrong, (
        "tensor names spelled outside runtime/model/io_spec.py (use its "
        "constants):\n" + "\n".join(wrong)
    )


def test_a_name_spelled_elsewhere_is_named_by_file_and_line(tmp_path):
    """The check itself: a tensor name in a string, or as a dict(...) keyword, is found."""
    path = tmp_path / "mod.py"
    path.write_text('x = "regions_att"\ny = dict(state, h=1)\nz = f"scores_{8}"\n')
    assert spellings(path, tensor_names()) == [(1, "regions_att"), (2, "h"), (3, "scores_")]


def test_the_allowlist_is_still_needed():
    """Each allowed (file, name) is still spelled there, so the list stays as short as it can."""
    names = tensor_names()
    stale = []
    for rel, name in ALLOWED:
        path = ROOT / rel
        times = sum(1 for _, n in spellings(path, names) if n == name) if path.exists() else 0
        if not times:
            stale.append(f"{rel}: {name!r} is no longer spelled there")
    assert not stale, "\n".join(stale)


DEFINES = re.compile(r"^(OPSETS?|\w*TOLERANCES?|CAPTION_AGREEMENT)$")
LITERAL_KEYWORDS = ("opset_version", "atol", "rtol")  # a literal here is an opset or tolerance


def test_opsets_and_tolerances_are_defined_only_in_io_spec():
    wrong = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name) and DEFINES.match(name.id):
                        wrong.append(f"{rel}:{node.lineno}: defines {name.id}")
            if isinstance(node, ast.Call):
                wrong += [
                    f"{rel}:{node.lineno}: {k.arg}={ast.unparse(k.value)}"
                    for k in node.keywords
                    if k.arg in LITERAL_KEYWORDS and isinstance(k.value, ast.Constant)
                ]
    assert not wrong, "opsets and tolerances belong in runtime/model/io_spec.py:\n" + "\n".join(
        wrong
    )
    assert io_spec.OPSET in io_spec.OPSETS  # the runtime runs what the exporter writes

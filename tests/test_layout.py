"""The runtime's layers: runtime.app -> runtime.channels -> runtime.model, each using
runtime.errors and runtime.options, and none importing torch or the training side. Read from
the source, every import counted, those inside functions too."""

import ast
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.unit

RUNTIME = ROOT / "runtime"
LAYERS = ("model", "channels", "app")  # each may import the ones before it


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # from runtime import io_spec
    return names


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "runtime" and parts[1] in LAYERS else None


def test_every_runtime_module_sits_in_a_layer_and_imports_only_down():
    loose = sorted(p.name for p in RUNTIME.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py", "options.py"]
    wrong = []
    for path in sorted(RUNTIME.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        here = rel.parts[1] if len(rel.parts) > 2 else None  # None: runtime/errors.py and the like
        if here:
            allowed = set(LAYERS[: LAYERS.index(here) + 1])
        else:  # the CLI may use every layer; errors.py and options.py none
            allowed = set(LAYERS) if rel.name == "__main__" else set()
        for name in imports(path):
            if name.split(".")[0] in ("torch", "export"):
                wrong.append(f"{rel}: imports {name}")
            elif layer(name) and layer(name) not in allowed:
                wrong.append(f"{rel}: imports {name}, a layer above it")
    assert not wrong, "\n".join(wrong)


def test_the_layers_hold_what_their_names_say():
    have = {g: {p.stem for p in (RUNTIME / g).glob("*.py")} for g in LAYERS}
    assert {"bundle", "captioner", "decoding", "detector", "io_spec", "session"} <= have["model"]
    assert {"base", "registry", "caption", "objects", "detector", "text", "compose"} <= have[
        "channels"
    ]
    assert {"loop", "worker", "sources", "speech", "bench", "doctor"} <= have["app"]

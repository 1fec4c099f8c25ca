"""One way to assemble SceneSpeak: every command builds its captioner and channels in
runtime/app/assemble.py, options are checked before onnxruntime loads, the CLI is parse, call,
print, the describe loop is wiring, and no library module names a command-line flag."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.unit
RUNTIME = ROOT / "runtime"


def _calls(name: str) -> list[str]:
    """Where runtime/ calls `name(...)`, as 'path:line'."""
    out = []
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                called = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else ""
                )
                if called == name:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_the_captioner_setup_and_placement_are_assembled_in_one_place():
    for name in ("Captioner", "Setup", "place", "ChannelSet"):
        assert {c.split(":")[0] for c in _calls(name)} == {"runtime/app/assemble.py"}, name


def test_no_library_module_names_a_command_line_flag():
    """The model and channel layers say what is wrong in their own terms; the CLI names the
    flag (OptionError.field -> flag)."""
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for layer in ("model", "channels")
        for p in (RUNTIME / layer).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if flag.search(line)
    ]
    assert found == []


def test_options_are_checked_before_onnxruntime_loads():
    code = (
        "import sys\nfrom runtime.__main__ import main\ncode = main(['caption', 'x.jpg', "
        "'--beam', '17'])\nprint(code, 'onnxruntime' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert r.stderr.strip() == "error: --beam 17: use 1 (greedy) to 16 beams"


def test_model_flags_are_declared_once_as_dataclass_fields():
    """--model, --device, --threads and --beam come from ModelOptions for every command."""
    from runtime.__main__ import build_parser

    _, commands = build_parser()
    for name in ("caption", "describe", "bench", "doctor"):
        actions = {a.dest: a for a in commands[name]._actions}
        assert "bundle folder" in actions["model"].help
        assert "device profile" in actions["device"].help
    text = (RUNTIME / "__main__.py").read_text()
    for flag in ("--model", "--device", "--threads", "--beam"):
        assert f'"{flag}"' not in text.replace('r.add_argument("--beam"', "")  # bench-row's own


def test_the_cli_and_the_loop_stay_small():
    assert len((RUNTIME / "__main__.py").read_text().splitlines()) < 200
    tree = ast.parse((RUNTIME / "app" / "loop.py").read_text())
    loop = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DescribeLoop")
    assert ast.get_docstring(loop)
    assert loop.end_lineno - loop.lineno < 150
    assert not [
        n
        for n in ast.walk(loop)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "isinstance"
    ]

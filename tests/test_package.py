"""SceneSpeak as an installed package: the wheel holds the bundles, clips and profiles, and its
`scenespeak` command captions a photo from another folder, with no checkout around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import ROOT

pytestmark = [pytest.mark.system]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds, installed into a folder of its own (its dependencies
    are this environment's)."""
    tmp = tmp_path_factory.mktemp("package")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp / "dist").glob("scenespeak-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "runtime/data/models/default/manifest.json",
        "runtime/data/models/detector/detector.int8.onnx",
        "runtime/data/models/shapes/encoder.int8.onnx",
        "runtime/data/assets/sample_photos.mp4",
        "runtime/data/device/profiles/laptop-cpu.toml",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "data/", "runs/")) for n in names)
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return tmp / "site"


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [str(site / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_installed_command_captions_a_photo_from_any_folder(installed, tmp_path):
    photo = ROOT / "assets" / "photos" / "chelsea.jpg"
    r = _run(installed, "scenespeak", "caption", str(photo), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout)
    assert line["description"].startswith("I see a cat ahead")
    r = _run(installed, "scenespeak", "doctor", "--json", cwd=tmp_path)
    bundle = json.loads(r.stdout)["bundle"]["path"]
    assert (
        Path(bundle) == installed / "runtime" / "data" / "models" / "default"
    )  # not the checkout's


def test_both_commands_give_help(installed, tmp_path):
    for command in ("scenespeak", "scenespeak-export"):
        r = _run(installed, command, "--help", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: {command}"), r.stderr


def test_every_import_is_a_declared_dependency():
    """The runtime's third-party imports are all in pyproject's dependencies, or in an extra
    where the import is optional (metrics' pycocoevalcap); PIL came in through matplotlib once,
    undeclared."""
    import ast

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [
        d for extra in project["optional-dependencies"].values() for d in extra
    ]
    declared = {d.split(">")[0].split("=")[0].split(";")[0].strip().lower() for d in deps}
    module_of = {
        "onnxruntime": "onnxruntime",
        "numpy": "numpy",
        "cv2": "opencv-python-headless",
        "PIL": "pillow",
        "pyttsx3": "pyttsx3",
        "tqdm": "tqdm",
        "rapidocr": "rapidocr",
        "zxingcpp": "zxing-cpp",
        "matplotlib": "matplotlib",
        "tomli": "tomli",
        "pycocoevalcap": "pycocoevalcap",
    }
    stdlib = set(sys.stdlib_module_names) | {"runtime"}
    for path in (ROOT / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top in stdlib:
                    continue
                assert top in module_of, f"{path.relative_to(ROOT)}: imports {top}, undeclared"
                assert module_of[top] in declared, f"{module_of[top]} is not in dependencies"

"""Model bundles: `manifest.json` plus the ONNX graphs of each precision and the weights files
they read, every file checked by sha256.

    bundle = load_bundle("models/default")  # the real-photo model; models/shapes: synthetic
    paths = bundle.graph_paths("int8")  # hashes checked here; a damaged file raises BundleError
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from runtime.errors import BundleError
from runtime.model import io_spec
from runtime.model.onnx_check import check_graph
from runtime.model.preprocess import PreprocessConfig
from runtime.model.vocab import SPECIALS, Vocab

FORMAT = "scenespeak-bundle/1"
MAX_VOCAB = 1_000_000
MAX_LEN = 1000
MAX_MANIFEST_BYTES = 16 * 2**20  # the default's is ~40 kB


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _get(d: dict, key: str, kind: type | tuple, where: str):
    if not isinstance(d, dict) or key not in d:
        raise BundleError(f"{where}: missing key {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        want = " or ".join(
            _TYPE_NAMES.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,))
        )
        raise BundleError(
            f"{where}: {key!r} has the wrong type ({type(value).__name__}; expected {want})"
        )
    return value


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "a list",
    bool: "true or false",
}


@dataclass(frozen=True)
class GraphFile:
    path: Path
    sha256: str
    data: GraphFile | None = None  # the external-data (weights) file the graph reads, if any

    @property
    def files(self) -> tuple[Path, ...]:
        """What the graph needs on disk: itself and its weights file."""
        return (self.path,) + ((self.data.path,) if self.data else ())


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict
    vocab: Vocab
    preprocess: PreprocessConfig
    max_len: int
    files: dict[str, dict[str, GraphFile]]  # precision -> graph -> file
    objects: GraphFile | None = None  # spoken names of the encoder's ImageNet classes
    decoding: dict = field(default_factory=dict)  # {"no_repeat": bool, "dangling": [word, ...]}
    confidence: dict | None = None  # {"slope", "intercept", "threshold"}: see
    # runtime/model/confidence.py
    kinds: dict = field(default_factory=dict)  # {"words": {word: kind}, "objects": {name: kind},
    # "same": {name: [words for the same thing]}} (export/kinds.py)
    _verified: set = field(default_factory=set, compare=False, repr=False)

    @property
    def synthetic(self) -> bool:
        """Whether its captions describe this project's synthetic scenes (models/shapes), not
        real photos: the manifest's caption_domain."""
        return str(self.manifest.get("caption_domain", "")).startswith("synthetic")

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in io_spec.PRECISIONS if p in self.files)

    def graph_paths(self, precision: str) -> dict[str, Path]:
        """The graphs of one precision, after checking that each file is intact."""
        if precision not in self.files:
            raise BundleError(
                f"{self.root}: no {precision} graphs (has {', '.join(self.precisions)})"
            )
        for f in self.files[precision].values():
            if f not in self._verified:
                _check_hash(f)
                if f.data is not None and f.data not in self._verified:  # fp32 and fp16 share it
                    _check_hash(f.data)
                    self._verified.add(f.data)
                check_graph(f.path, self.root, f.data.path if f.data else None)
                self._verified.add(f)
        return {g: f.path for g, f in self.files[precision].items()}

    def size_bytes(self, precision: str) -> int:
        """Bytes on disk that one precision loads: its graphs and the weights files they read
        (a file that two precisions share counts for each)."""
        paths = {p for f in self.files[precision].values() for p in f.files}
        return sum(p.stat().st_size for p in paths)

    def object_names(self) -> tuple[str, ...]:
        """The spoken name of each ImageNet logit (objects.json, hash checked)."""
        if self.objects is None:
            raise BundleError(f"{self.root}: this bundle has no objects channel (export it again)")
        f = self.objects
        _check_hash(f)
        try:
            classes = json.loads(f.path.read_text())["classes"]
            names = tuple(c["spoken"] for c in classes)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise BundleError(
                f"{f.path}: not a SceneSpeak objects table ({type(e).__name__})"
            ) from None
        if not names or not all(isinstance(n, str) and n for n in names):
            raise BundleError(f"{f.path}: every class needs a spoken name")
        return names


def _check_hash(f: GraphFile) -> None:
    if not f.path.is_file():
        raise BundleError(f"{f.path}: file missing from the bundle")
    if sha256(f.path) != f.sha256:
        raise BundleError(f"{f.path}: sha256 mismatch, the file is damaged or was changed")


def _file(root: Path, entry, manifest: str, what: str) -> GraphFile:
    """A manifest file entry {"path", "sha256"} named `what` (e.g. objects)."""
    rel = _get(entry, "path", str, f"{manifest}:{what}")
    target = (root / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(root.resolve()):
        raise BundleError(f"{manifest}: {what} points outside the bundle ({rel})")
    digest = _get(entry, "sha256", str, f"{manifest}:{what}")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BundleError(f"{manifest}: {what}.sha256 is not a sha256 hex digest")
    return GraphFile(target, digest)


def _graph_file(root: Path, entry, manifest: str, what: str) -> GraphFile:
    """A graph's entry (e.g. files.fp32.encoder): a file entry, whose "data", if present, is the
    file entry of the weights file the graph reads."""
    graph = _file(root, entry, manifest, what)
    if "data" not in entry:
        return graph
    return replace(graph, data=_file(root, entry["data"], manifest, f"{what}.data"))


def load_bundle(root: str | Path) -> Bundle:
    """Read and check a bundle's manifest; graph hashes are checked by graph_paths()."""
    root = Path(root)
    path = root / io_spec.MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: no bundle manifest here")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {path.stat().st_size} bytes is too large for a manifest")
    try:
        m = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"{path}: not valid JSON ({str(e)[:120] or type(e).__name__})") from None
    where = str(path)
    if "format" in m and m["format"] != FORMAT:  # whatever its type: say what is expected
        raise BundleError(
            f"{path}: format {m['format']!r} is not {FORMAT!r} (not a SceneSpeak "
            "bundle, or one this version cannot read)"
        )
    _get(m, "format", str, where)
    v = _get(m, "vocab", dict, where)
    words = _get(v, "words", list, where + ":vocab")
    if not 4 < len(words) <= MAX_VOCAB or not all(isinstance(w, str) for w in words):
        raise BundleError(f"{path}: vocab.words must be 5..{MAX_VOCAB} strings")
    if tuple(words[: len(SPECIALS)]) != SPECIALS:
        raise BundleError(f"{path}: vocab.words must start with {list(SPECIALS)}")
    twice = sorted({w for w in words if words.count(w) > 1}) if len(set(words)) < len(words) else []
    if twice:
        raise BundleError(
            f"{path}: vocab.words lists {', '.join(map(repr, twice[:5]))} more than once"
        )
    for i, special in enumerate(("pad", "bos", "eos", "unk")):  # the ids the runtime assumes
        if special in v and _get(v, special, int, where + ":vocab") != i:
            raise BundleError(
                f"{path}: vocab.{special} is {v[special]}; it must be {i}, the "
                f"place of {SPECIALS[i]} in vocab.words"
            )
    max_len = _get(m, "max_len", int, where)
    if not 1 <= max_len <= MAX_LEN:
        raise BundleError(f"{path}: max_len {max_len} is outside 1..{MAX_LEN}")
    try:
        pre = PreprocessConfig.from_dict(_get(m, "preprocess", dict, where))
    except (TypeError, ValueError) as e:
        raise BundleError(f"{path}: bad preprocess block ({e})") from None
    files: dict[str, dict[str, GraphFile]] = {}
    for precision, graphs in _get(m, "files", dict, where).items():
        if precision not in io_spec.PRECISIONS:
            raise BundleError(f"{path}: unknown precision {precision!r}")
        files[precision] = {}
        for graph in io_spec.GRAPHS:
            entry = _get(graphs, graph, dict, f"{where}:files.{precision}")
            files[precision][graph] = _graph_file(root, entry, where, f"files.{precision}.{graph}")
    if not files:
        raise BundleError(f"{path}: lists no graph files")
    objects = (
        _file(root, _get(m, "objects", dict, where), where, "objects") if "objects" in m else None
    )
    return Bundle(
        root,
        m,
        Vocab(tuple(words)),
        pre,
        max_len,
        files,
        objects,
        _decoding(m, words, where),
        _confidence(m, where),
        _kinds(m, where),
    )


def _decoding(m: dict, words: list, where: str) -> dict:
    """The optional "decoding" block: {"no_repeat": bool, "dangling": [vocabulary words]}."""
    if "decoding" not in m:
        return {}
    d = _get(m, "decoding", dict, where)
    no_repeat = _get(d, "no_repeat", bool, where + ":decoding") if "no_repeat" in d else False
    dangling = _get(d, "dangling", list, where + ":decoding") if "dangling" in d else []
    if not all(isinstance(w, str) for w in dangling):
        raise BundleError(f"{where}: decoding.dangling must be a list of words")
    return {"no_repeat": no_repeat, "dangling": [w for w in dangling if w in words]}


def _confidence(m: dict, where: str) -> dict | None:
    """The optional "confidence" block: a logistic calibration of the mean token log-probability
    and the threshold below which a caption is hedged, each a finite number."""
    if "confidence" not in m:
        return None
    c = _get(m, "confidence", dict, where)
    out = {}
    for key in ("slope", "intercept", "threshold"):
        value = _get(c, key, (int, float), where + ":confidence")
        if isinstance(value, bool) or not abs(float(value)) < 1e6:
            raise BundleError(f"{where}: confidence.{key} must be a finite number, got {value!r}")
        out[key] = float(value)
    if not 0 <= out["threshold"] <= 1:
        raise BundleError(f"{where}: confidence.threshold {out['threshold']} is outside 0..1")
    return out


def _kinds(m: dict, where: str) -> dict:
    """The optional "kinds" block: which kind of thing (mammal, bird, wheeled vehicle, ...)
    caption words and spoken object names are, so that a caption and a confident object that
    name two things of one kind can be reconciled (runtime/channels/compose.py)."""
    if "kinds" not in m:
        return {}
    k = _get(m, "kinds", dict, where)
    out = {}
    for part in ("words", "objects"):
        table = _get(k, part, dict, where + ":kinds")
        if not all(isinstance(a, str) and isinstance(b, str) for a, b in table.items()):
            raise BundleError(f"{where}: kinds.{part} must map words to kind names")
        out[part] = table
    same = _get(k, "same", dict, where + ":kinds") if "same" in k else {}
    if not all(isinstance(v, list) and all(isinstance(w, str) for w in v) for v in same.values()):
        raise BundleError(f"{where}: kinds.same must map object names to lists of words")
    out["same"] = same
    return out

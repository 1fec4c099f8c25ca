"""Self-critical sequence training: the decoder learns from captions it samples itself.

Cross-entropy teaches the next word of a reference; the captions are then decoded greedily, one
best word after another, and scored as whole sentences. Self-critical training (Rennie et al.
2017) closes that gap: for each image it samples K captions, rewards each by its CIDEr-D against
the image's references, and raises the log-probability of those better than the mean of the
image's other K-1 samples (Luo 2020), lowering the rest. `<eos>` is scored as a word, so a
caption that stops mid-phrase ("a man in a") loses the n-grams that end a reference.

CIDEr-D here is coco-caption's (pycocoevalcap's `Cider`), with document frequencies from the
training references, computed once; tests/test_scst.py holds it equal to pycocoevalcap's.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from runtime.model.vocab import EOS, tokenize

Vec = tuple[list[dict[tuple[str, ...], float]], list[float], int]  # per n: tf-idf, norms, length


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(
        tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
    )


class CiderD:
    """CIDEr-D of candidates against fixed reference sets, idf from those references."""

    def __init__(self, refs: list[list[str]], n: int = 4, sigma: float = 6.0, eos: bool = True):
        """refs[i]: image i's reference captions. With `eos`, each caption ends in the word
        <eos>, so that where a caption ends is scored too."""
        self.n, self.sigma, self.eos = n, sigma, eos
        words = [[self.words(c) for c in caps] for caps in refs]
        self.df: Counter = Counter()
        for caps in words:
            self.df.update({g for c in caps for g in _ngrams(c, n)})
        self.log_n = math.log(float(len(refs)))
        self.refs = [[self._vec(c) for c in caps] for caps in words]

    def words(self, caption: str) -> list[str]:
        return tokenize(caption) + ([EOS] if self.eos else [])

    def _vec(self, words: list[str]) -> Vec:
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        for gram, tf in _ngrams(words, self.n).items():
            v = tf * (self.log_n - math.log(max(1.0, self.df[gram])))
            vec[len(gram) - 1][gram] = v
            norm[len(gram) - 1] += v * v
        return vec, [math.sqrt(x) for x in norm], max(len(words) - 1, 0)  # length: bigrams

    def _sim(self, hyp: Vec, ref: Vec) -> float:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-((lh - lr) ** 2) / (2 * self.sigma**2))
        total = 0.0
        for k in range(self.n):
            dot = sum(min(v, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, v in vh[k].items())
            if nh[k] and nr[k]:
                dot /= nh[k] * nr[k]
            total += dot * penalty
        return total / self.n

    def score(self, caption: str | list[str], image: int) -> float:
        """CIDEr-D of one caption (a string, or its words, <eos> included) for image `image`."""
        words = self.words(caption) if isinstance(caption, str) else caption
        hyp = self._vec(words)
        refs = self.refs[image]
        return 10.0 * sum(self._sim(hyp, r) for r in refs) / len(refs)


def sample(decoder, head, k: int, max_len: int, bos: int, eos: int):
    """K captions sampled per image from the decoder's own distribution.

    head: regions (B,49,D), regions_att (B,49,A), h (B,H), c (B,H). Returns tokens (B*K,T),
    their log-probabilities (B*K,T) with gradients, and the mask of real tokens (B*K,T), the
    first <eos> included; row b*K+j is image b's j-th sample."""
    regions, regions_att, h, c = (x.repeat_interleave(k, dim=0) for x in head)
    token = torch.full((regions.shape[0],), bos, dtype=torch.long, device=regions.device)
    alive = torch.ones_like(token, dtype=torch.bool)
    tokens, logps, masks = [], [], []
    for _ in range(max_len):
        logits, h, c, _ = decoder.step(token, h, c, regions, regions_att)
        logp = logits.float().log_softmax(-1)
        token = torch.multinomial(logp.detach().exp(), 1).squeeze(1)
        tokens.append(token)
        logps.append(logp.gather(1, token[:, None]).squeeze(1))
        masks.append(alive.clone())
        alive = alive & (token != eos)
        if not bool(alive.any()):
            break
    return torch.stack(tokens, 1), torch.stack(logps, 1), torch.stack(masks, 1).float()


def beams(decoder, head, k: int, max_len: int, bos: int, eos: int):
    """The K best captions of each image by beam search, and their log-probabilities.

    The search runs without gradients; the K captions are then read once more, teacher-forced,
    to give log-probabilities with gradients. Returns what `sample` returns."""
    regions, regions_att, h, c = (x.repeat_interleave(k, dim=0) for x in head)
    n = regions.shape[0] // k
    training = decoder.training
    decoder.eval()  # the search is the deployed decoder's, without dropout
    with torch.no_grad():
        total = torch.full((n, k), float("-inf"), device=regions.device)
        total[:, 0] = 0.0  # one live beam per image at first
        token = torch.full((n * k,), bos, dtype=torch.long, device=regions.device)
        done = torch.zeros(n * k, dtype=torch.bool, device=regions.device)
        seqs = torch.zeros(n * k, 0, dtype=torch.long, device=regions.device)
        hs, cs = h, c
        for _ in range(max_len):
            logits, hs, cs, _ = decoder.step(token, hs, cs, regions, regions_att)
            logp = logits.float().log_softmax(-1)
            logp[done] = float("-inf")
            logp[done, eos] = 0.0  # a finished beam stays as it is
            scores = (total.view(-1, 1) + logp).view(n, -1)
            total, flat = scores.topk(k, dim=1)
            vocab = logp.shape[1]
            rows = (flat // vocab + torch.arange(n, device=flat.device)[:, None] * k).view(-1)
            token = (flat % vocab).view(-1)
            seqs = torch.cat([seqs[rows], token[:, None]], dim=1)
            hs, cs, done = hs[rows], cs[rows], done[rows] | (token == eos)
            if bool(done.all()):
                break
    decoder.train(training)
    inputs = torch.cat([torch.full_like(seqs[:, :1], bos), seqs[:, :-1]], dim=1)
    is_eos = (seqs == eos).long()
    mask = (is_eos.cumsum(1) - is_eos == 0).float()  # up to the first eos, included
    logits, _ = decoder(regions, regions_att, h, c, inputs)
    logp = logits.float().log_softmax(-1).gather(2, seqs[:, :, None]).squeeze(2)
    return seqs, logp, mask


def rewards(cider: CiderD, tokens: np.ndarray, images: np.ndarray, words, eos: int) -> np.ndarray:
    """CIDEr-D of each sampled row (tokens (B*K,T)); `images` the training index of each row."""
    out = np.empty(len(tokens))
    for r, (row, image) in enumerate(zip(tokens, images)):
        ids = list(row)
        end = ids.index(eos) if eos in ids else len(ids)
        said = [words[i] for i in ids[:end]] + ([EOS] if cider.eos and end < len(ids) else [])
        out[r] = cider.score(said, int(image))
    return out


def self_critical_loss(logp: torch.Tensor, mask: torch.Tensor, reward: np.ndarray, k: int):
    """Policy gradient with each sample's baseline the mean reward of its image's other K-1
    samples; the mean over real tokens."""
    r = torch.from_numpy(reward).float().view(-1, k)
    advantage = (r - (r.sum(1, keepdim=True) - r) / (k - 1)).view(-1).to(logp.device)
    return -(advantage[:, None] * logp * mask).sum() / mask.sum().clamp(min=1)

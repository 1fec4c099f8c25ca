"""Greedy and beam-search decoding over a step model: the one decode loop every backend shares.

A `StepModel` advances the decoder by one token; a `TokenDecoder` picks the next tokens from
the logits, says when every sequence is finished and, for beam search, which rows the new rows
continue, so that their LSTM state follows them. `decode()` is the loop. Beams are batched: an
image with K beams is K rows of one decoder-step call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from runtime.model import io_spec

MAX_BEAM = 16  # beams per image: more only slow the step graph (each is a batch row)
State = dict[str, np.ndarray]  # decoder inputs other than the token, by io_spec name


class StepModel(Protocol):
    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State, np.ndarray]:
        """token (B,) int64 + state -> logits (B,V), next state, alpha (B,49)."""


class TokenDecoder(Protocol):
    beams: int  # rows each input takes in the batch: 1 for greedy

    def update(
        self, tokens: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, bool, np.ndarray | None]:
        """tokens (R,t), logits (R,V) -> tokens (R,t+1), whether every row has ended, and the
        previous row each new row continues (None: the same rows)."""

    def finalize(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (R,t) -> the row of the best sequence of each input (B,)."""


@dataclass(frozen=True)
class DecodingOptions:
    bos: int  # token that starts every caption
    eos: int  # token that ends a caption
    max_len: int = 24  # most tokens generated per caption, eos included
    beam_size: int = 1  # 1: greedy; K > 1: beam search with K beams per image
    no_repeat: bool = False  # block a word right after itself, a bigram a third time and a
    # trigram a second time, so that a caption cannot babble ("a a a", "and a blue shirt and a
    # blue shirt"); real-caption bundles turn it on in their manifest
    dangling: tuple[int, ...] = ()  # words a caption may not end on ("a", "of", "with"): eos
    # is blocked after them, and they are blocked where only eos can follow
    never: tuple[int, ...] = ()  # tokens never generated (<unk>, which would be dropped from
    # the text and leave a gap, "riding a <unk>" said as "riding a")


DANGLING = (
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "to",
    "at",
)  # no caption ends on these


def options_for(bundle, beam_size: int = 1) -> DecodingOptions:
    """The decoding options a bundle asks for (its manifest's "decoding" block)."""
    v, rules = bundle.vocab, bundle.decoding
    never = (v.pad, v.bos, v.id("<unk>")) if rules else ()
    return DecodingOptions(
        v.bos,
        v.eos,
        bundle.max_len,
        beam_size,
        bool(rules.get("no_repeat")),
        tuple(v.id(w) for w in rules.get("dangling", ())),
        never,
    )


def degenerate(text: str, dangling=DANGLING) -> str | None:
    """Why a caption is unfit to say, or None: a word three times in a row, a phrase of two or
    more words three times, or an end on a dangling word ("... riding a bike on a")."""
    words = text.split()
    for i in range(len(words) - 2):
        if words[i] == words[i + 1] == words[i + 2]:
            return f"'{words[i]}' three times in a row"
    for n in range(2, len(words) // 3 + 1):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        for g in dict.fromkeys(grams):  # in order, so the first phrase found is named
            if grams.count(g) >= 3:
                return f"'{' '.join(g)}' three times"
    if words and words[-1] in set(dangling):
        return f"ends on '{words[-1]}'"
    return None


def blocked(row: np.ndarray, opts: DecodingOptions) -> list[int]:
    """Token ids that may not come next after `row` (bos first) under opts' rules. Plain
    Python over the few words of a caption: about 5 us a step, where numpy's per-call cost
    was most of the rules' time."""
    out = list(opts.never)
    words = row[1:].tolist()
    if opts.no_repeat and words:
        last = words[-1]
        out.append(last)  # the same word twice in a row
        follows: dict[int, int] = {}
        for a, b in zip(words, words[1:]):
            if a == last:
                follows[b] = follows.get(b, 0) + 1
        out += [b for b, n in follows.items() if n >= 2]  # a bigram a third time
        if len(words) >= 2:  # a trigram a second time
            a0 = words[-2]
            out += [c for a, b, c in zip(words, words[1:], words[2:]) if a == a0 and b == last]
    if opts.dangling:
        if words and words[-1] in opts.dangling:
            out.append(opts.eos)
        if len(row) >= opts.max_len - 1:  # the next word is the last before the forced eos
            out += opts.dangling
    return out


def constrain(tokens: np.ndarray, logits: np.ndarray, opts: DecodingOptions | None) -> np.ndarray:
    """logits (R,V) with the blocked tokens of each row at -inf, and only eos at the last step
    when `dangling` is set. Rows that have ended are left as they are."""
    if opts is None or not (opts.no_repeat or opts.dangling or opts.never):
        return logits
    logits = np.array(logits, dtype=np.float32)
    for r, row in enumerate(tokens):
        if len(row) > 1 and row[-1] == opts.eos:
            continue
        if opts.dangling and len(row) >= opts.max_len:  # the length limit: end here
            eos = logits[r, opts.eos]
            logits[r] = -np.inf
            logits[r, opts.eos] = eos
            continue
        ban = blocked(row, opts)
        if ban:
            logits[r, ban] = -np.inf
    return logits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    out = logits - logits.max(1, keepdims=True)
    return out - np.log(np.exp(out).sum(1, keepdims=True))


class GreedyDecoder:
    """The most likely next token of each row (among those `opts` allows). `scores` sums the
    chosen tokens' log-probabilities under the model's own distribution, eos included, and
    `lengths` counts them: their ratio is what the caption's confidence is calibrated from."""

    beams = 1

    def __init__(self, eos: int, opts: DecodingOptions | None = None):
        self.eos, self.opts = eos, opts
        self.scores: np.ndarray | None = None
        self.lengths: np.ndarray | None = None

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool, None]:
        if self.scores is None or self.lengths is None or tokens.shape[1] == 1:
            self.scores, self.lengths = np.zeros(len(tokens)), np.zeros(len(tokens), np.int64)
        if len(tokens) == 1:
            return self._update_one(tokens, logits, self.scores, self.lengths)
        nxt = constrain(tokens, logits, self.opts).argmax(axis=-1)
        live = np.ones(len(tokens), bool)
        if tokens.shape[1] > 1:  # a row that has ended only extends with eos
            live = tokens[:, -1] != self.eos
            nxt[~live] = self.eos
        top = logits.max(axis=1, keepdims=True)  # the chosen tokens' log-probabilities only
        lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        logp = logits[np.arange(len(nxt)), nxt] - lse
        self.scores += np.where(live, logp, 0.0)
        self.lengths += live
        return np.concatenate([tokens, nxt[:, None]], axis=1), bool((nxt == self.eos).all()), None

    def _update_one(
        self, tokens: np.ndarray, logits: np.ndarray, scores: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, bool, None]:
        """update() for the one row of a camera frame, the same choice in fewer numpy calls:
        the rules' mask is only built when the most likely token is one they block, which
        spares a copy of the logits at most steps. `scores` and `lengths` are this decoder's,
        added to in place."""
        row, x, opts = tokens[0], logits[0], self.opts
        live = not (len(row) > 1 and row[-1] == self.eos)
        if not live:
            nxt = self.eos
        elif opts is not None and opts.dangling and len(row) >= opts.max_len:
            nxt = self.eos  # the length limit: end here (constrain() leaves only eos)
        else:
            nxt = int(x.argmax())
            ban = blocked(row, opts) if opts is not None else ()
            if nxt in ban:
                x = np.array(x, dtype=np.float32)
                x[ban] = -np.inf
                nxt = int(x.argmax())
                x = logits[0]
        if live:
            top = x.max()
            scores[0] += x[nxt] - (top + np.log(np.exp(x - top).sum()))
            lengths[0] += 1
        tokens = np.append(tokens, [[nxt]], axis=1)
        return tokens, nxt == self.eos, None

    def finalize(self, tokens: np.ndarray) -> np.ndarray:
        return np.arange(len(tokens))


class BeamSearchDecoder:
    """K beams per input, scored by the sum of token log-probabilities. A beam that has ended
    stays in the beam with its score (it only extends with eos), so search stops once the K
    best of every input have ended: nothing unfinished can overtake them, since scores only fall."""

    def __init__(self, beams: int, eos: int, opts: DecodingOptions | None = None):
        self.beams, self.eos, self.opts = beams, eos, opts
        self.scores: np.ndarray | None = None
        self.lengths: np.ndarray | None = None

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
        rows, vocab = logits.shape
        k = self.beams
        logp = log_softmax(logits)
        if self.opts is not None and (self.opts.no_repeat or self.opts.dangling or self.opts.never):
            logp[~np.isfinite(constrain(tokens, logits, self.opts))] = -np.inf
        if self.scores is None or self.lengths is None or tokens.shape[1] == 1:
            # all beams of an input start equal: expand only the first
            self.scores = np.where(np.arange(rows) % k == 0, 0.0, -np.inf)
            self.lengths = np.zeros(rows, np.int64)
        cand = self.scores[:, None] + logp
        ended = tokens[:, -1] == self.eos if tokens.shape[1] > 1 else np.zeros(rows, bool)
        cand[ended] = -np.inf
        cand[ended, self.eos] = self.scores[ended]
        cand = cand.reshape(rows // k, k * vocab)
        best = np.argsort(-cand, axis=1, kind="stable")[:, :k]  # (B,K) flat (beam, token) ids
        source = (np.arange(rows // k)[:, None] * k + best // vocab).reshape(-1)
        nxt = (best % vocab).reshape(-1)
        self.scores = np.take_along_axis(cand, best, axis=1).reshape(-1)
        self.lengths = self.lengths[source] + ~ended[source]
        tokens = np.concatenate([tokens[source], nxt[:, None]], axis=1)
        return tokens, bool((nxt == self.eos).all()), source

    def finalize(self, tokens: np.ndarray) -> np.ndarray:
        if self.scores is None:
            raise RuntimeError("finalize() before any update()")
        k = self.beams
        return np.arange(len(tokens) // k) * k + self.scores.reshape(-1, k).argmax(axis=1)


@dataclass
class DecodeResult:
    tokens: np.ndarray  # (B,T) generated ids, bos dropped; eos-padded after the end
    alphas: np.ndarray  # (B,T,49) attention at each generated token
    steps: int  # decoder steps run
    decoder_ms: float
    logprob: np.ndarray | None = None  # (B,) the caption's mean token log-probability, eos included


def initial_state(encoder_out: dict[str, np.ndarray]) -> State:
    """Encoder outputs -> the decoder state before the first token."""
    state = {
        io_spec.INITIAL_STATE[k]: v for k, v in encoder_out.items() if k in io_spec.INITIAL_STATE
    }
    state.update({k: encoder_out[k] for k in io_spec.CONTEXT})
    return state


def _rows(value, rows: np.ndarray):
    """value[rows] for numpy arrays and for ORT values bound on a device (copied back once)."""
    return (value if isinstance(value, np.ndarray) else value.numpy())[rows]


def decode(
    model: StepModel, state: State, opts: DecodingOptions, decoder: TokenDecoder | None = None
) -> DecodeResult:
    if decoder is None:
        decoder = (
            BeamSearchDecoder(opts.beam_size, opts.eos, opts)
            if opts.beam_size > 1
            else GreedyDecoder(opts.eos, opts)
        )
    batch = len(state[io_spec.H])
    if decoder.beams > 1:  # K rows per image, side by side in one batch
        state = {k: np.repeat(v, decoder.beams, axis=0) for k, v in state.items()}
    tokens = np.full((batch * decoder.beams, 1), opts.bos, dtype=np.int64)
    alphas = []
    start = time.perf_counter()
    for _ in range(opts.max_len):
        # feed the newest token, keep the state the step returns
        logits, state, alpha = model.step(tokens[:, -1], state)
        alphas.append(alpha)
        tokens, completed, source = decoder.update(tokens, logits)
        if source is not None and not np.array_equal(source, np.arange(len(source))):
            # beams were reordered: each keeps the LSTM state and attention of the row it
            # continues (regions are the same for every beam of an image)
            state = dict(state, **{k: _rows(state[k], source) for k in io_spec.STATE.values()})
            alphas = [a[source] for a in alphas]
        if completed:
            break
    best = decoder.finalize(tokens)
    elapsed = (time.perf_counter() - start) * 1e3
    scores, lengths = getattr(decoder, "scores", None), getattr(decoder, "lengths", None)
    logprob = (
        scores[best] / np.maximum(lengths[best], 1)
        if scores is not None and lengths is not None
        else None
    )
    return DecodeResult(
        tokens[best, 1:], np.stack(alphas, axis=1)[best], len(alphas), elapsed, logprob
    )

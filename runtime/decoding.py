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

from runtime import io_spec

State = dict[str, np.ndarray]  # decoder inputs other than the token, by io_spec name


class StepModel(Protocol):
    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State, np.ndarray]:
        """token (B,) int64 + state -> logits (B,V), next state, alpha (B,49)."""


class TokenDecoder(Protocol):
    beams: int  # rows each input takes in the batch: 1 for greedy

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
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


class GreedyDecoder:
    beams = 1

    def __init__(self, eos: int):
        self.eos = eos

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool, None]:
        nxt = logits.argmax(axis=-1)
        if tokens.shape[1] > 1:  # a row that has ended only extends with eos
            nxt[tokens[:, -1] == self.eos] = self.eos
        return np.concatenate([tokens, nxt[:, None]], axis=1), bool((nxt == self.eos).all()), None

    def finalize(self, tokens: np.ndarray) -> np.ndarray:
        return np.arange(len(tokens))


class BeamSearchDecoder:
    """K beams per input, scored by the sum of token log-probabilities. A beam that has ended
    stays in the beam with its score (it only extends with eos), so search stops once the K
    best of every input have ended: nothing unfinished can overtake them, since scores only fall."""

    def __init__(self, beams: int, eos: int):
        self.beams, self.eos = beams, eos
        self.scores: np.ndarray | None = None

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
        rows, vocab = logits.shape
        k = self.beams
        logits = logits.astype(np.float64)
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        if self.scores is None or tokens.shape[1] == 1:  # all beams of an input start equal:
            self.scores = np.where(np.arange(rows) % k == 0, 0.0, -np.inf)  # expand only the first
        cand = self.scores[:, None] + logp
        ended = tokens[:, -1] == self.eos if tokens.shape[1] > 1 else np.zeros(rows, bool)
        cand[ended] = -np.inf
        cand[ended, self.eos] = self.scores[ended]
        cand = cand.reshape(rows // k, k * vocab)
        best = np.argsort(-cand, axis=1, kind="stable")[:, :k]  # (B,K) flat (beam, token) ids
        source = (np.arange(rows // k)[:, None] * k + best // vocab).reshape(-1)
        nxt = (best % vocab).reshape(-1)
        self.scores = np.take_along_axis(cand, best, axis=1).reshape(-1)
        tokens = np.concatenate([tokens[source], nxt[:, None]], axis=1)
        return tokens, bool((nxt == self.eos).all()), source

    def finalize(self, tokens: np.ndarray) -> np.ndarray:
        k = self.beams
        return np.arange(len(tokens) // k) * k + self.scores.reshape(-1, k).argmax(axis=1)


@dataclass
class DecodeResult:
    tokens: np.ndarray  # (B,T) generated ids, bos dropped; eos-padded after the end
    alphas: np.ndarray  # (B,T,49) attention at each generated token
    steps: int  # decoder steps run
    decoder_ms: float


def initial_state(encoder_out: dict[str, np.ndarray]) -> State:
    """Encoder outputs -> the decoder state before the first token."""
    state = {io_spec.INITIAL_STATE[k]: v for k, v in encoder_out.items() if k in io_spec.INITIAL_STATE}
    state.update({k: encoder_out[k] for k in io_spec.CONTEXT})
    return state


def _rows(value, rows: np.ndarray):
    """value[rows] for numpy arrays and for ORT values bound on a device (copied back once)."""
    return (value if isinstance(value, np.ndarray) else value.numpy())[rows]


def decode(model: StepModel, state: State, opts: DecodingOptions,
           decoder: TokenDecoder | None = None) -> DecodeResult:
    if decoder is None:
        decoder = BeamSearchDecoder(opts.beam_size, opts.eos) if opts.beam_size > 1 else GreedyDecoder(opts.eos)
    batch = len(state["h"])
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
    return DecodeResult(tokens[best, 1:], np.stack(alphas, axis=1)[best], len(alphas), elapsed)

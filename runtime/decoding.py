"""Greedy decoding over a step model: the one decode loop every backend shares.

A `StepModel` advances the decoder by one token; a `TokenDecoder` picks the next tokens from
the logits and says when every sequence is finished. `decode()` is the loop.
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
    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool]:
        """tokens (B,t), logits (B,V) -> tokens (B,t+1), whether every sequence has ended."""


@dataclass(frozen=True)
class DecodingOptions:
    bos: int  # token that starts every caption
    eos: int  # token that ends a caption
    max_len: int = 24  # most tokens generated per caption, eos included


class GreedyDecoder:
    def __init__(self, eos: int):
        self.eos = eos

    def update(self, tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, bool]:
        ended = tokens[:, -1] == self.eos if tokens.shape[1] > 1 else np.zeros(len(tokens), bool)
        nxt = np.where(ended, self.eos, logits.argmax(axis=-1))
        return np.concatenate([tokens, nxt[:, None]], axis=1), bool((nxt == self.eos).all())


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


def decode(model: StepModel, state: State, opts: DecodingOptions,
           decoder: TokenDecoder | None = None) -> DecodeResult:
    decoder = decoder or GreedyDecoder(opts.eos)
    batch = len(state["h"])
    tokens = np.full((batch, 1), opts.bos, dtype=np.int64)
    alphas = []
    start = time.perf_counter()
    for _ in range(opts.max_len):
        # feed the newest token, keep the state the step returns
        logits, state, alpha = model.step(tokens[:, -1], state)
        alphas.append(alpha)
        tokens, completed = decoder.update(tokens, logits)
        if completed:
            break
    elapsed = (time.perf_counter() - start) * 1e3
    return DecodeResult(tokens[:, 1:], np.stack(alphas, axis=1), len(alphas), elapsed)

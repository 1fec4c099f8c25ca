"""The greedy loop against a scripted step model: EOS, max length and state handoff."""

import numpy as np

from runtime.decoding import DecodingOptions, GreedyDecoder, decode

BOS, EOS, V = 1, 2, 8


class Scripted:
    """Emits scripted tokens per sequence; records the tokens and state it was given."""

    def __init__(self, scripts: list[list[int]]):
        self.scripts, self.t, self.seen = scripts, 0, []

    def step(self, token, state):
        self.seen.append((token.copy(), state["h"].copy()))
        logits = np.zeros((len(token), V), np.float32)
        for b, s in enumerate(self.scripts):
            logits[b, s[min(self.t, len(s) - 1)]] = 5.0
        self.t += 1
        h = state["h"] + 1  # a state the loop must hand back next step
        return logits, dict(state, h=h), np.full((len(token), 49), 1 / 49, np.float32)


def _state(batch: int):
    z = np.zeros((batch, 4), np.float32)
    return {"h": z, "c": z, "regions": np.zeros((batch, 49, 3), np.float32),
            "regions_att": np.zeros((batch, 49, 3), np.float32)}


def test_stops_when_every_sequence_has_ended_and_pads_with_eos():
    model = Scripted([[5, 6, EOS], [4, EOS]])
    out = decode(model, _state(2), DecodingOptions(BOS, EOS, max_len=10))
    assert out.steps == 3
    assert out.tokens.tolist() == [[5, 6, EOS], [4, EOS, EOS]]
    assert out.alphas.shape == (2, 3, 49)


def test_feeds_bos_first_then_its_own_tokens_and_hands_the_state_on():
    model = Scripted([[5, 6, EOS]])
    decode(model, _state(1), DecodingOptions(BOS, EOS, max_len=10))
    assert [int(t[0]) for t, _ in model.seen] == [BOS, 5, 6]
    assert [float(h[0, 0]) for _, h in model.seen] == [0.0, 1.0, 2.0]


def test_max_len_caps_a_caption_that_never_ends():
    model = Scripted([[5]])
    out = decode(model, _state(1), DecodingOptions(BOS, EOS, max_len=4))
    assert out.steps == 4 and out.tokens.tolist() == [[5, 5, 5, 5]]


def test_greedy_update_keeps_ended_sequences_ended():
    g = GreedyDecoder(EOS)
    tokens = np.array([[BOS, EOS], [BOS, 5]])
    logits = np.zeros((2, V))
    logits[:, 6] = 1
    nxt, done = g.update(tokens, logits)
    assert nxt[:, -1].tolist() == [EOS, 6] and not done

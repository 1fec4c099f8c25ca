"""The greedy loop against a scripted step model: EOS, max length and state handoff."""

import numpy as np
import pytest

from runtime.model.decoding import BeamSearchDecoder, DecodingOptions, GreedyDecoder, decode

pytestmark = pytest.mark.unit

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
    return {
        "h": z,
        "c": z,
        "regions": np.zeros((batch, 49, 3), np.float32),
        "regions_att": np.zeros((batch, 49, 3), np.float32),
    }


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
    nxt, done, source = g.update(tokens, logits)
    assert nxt[:, -1].tolist() == [EOS, 6] and not done and source is None


class Tree:
    """A step model whose next-token distribution depends on the whole prefix, carried in the
    state: h[:,0] is the node of the prefix, and each image enters the tree at its own root
    (h[:,1]). Beam search must hand each beam its own state, or the sentences come out wrong.
    Tokens the tree does not list lead to a dead end that can only say eos."""

    DEAD = -1

    def __init__(self, children: dict[int, dict[int, tuple[float, int]]]):
        self.children = children  # node -> token -> (probability, child node)
        self.calls = []

    def step(self, token, state):
        self.calls.append(len(token))
        node, root = state["h"][:, 0].astype(int), state["h"][:, 1].astype(int)
        nxt = np.array(
            [
                r if t == BOS else self.children.get(n, {}).get(int(t), (0, self.DEAD))[1]
                for n, r, t in zip(node, root, token)
            ]
        )
        logits = np.full((len(token), V), -30.0, np.float32)
        for row, n in enumerate(nxt):
            for tok, (p, _) in self.children.get(int(n), {EOS: (1.0, self.DEAD)}).items():
                logits[row, tok] = np.log(p)
        h = state["h"].copy()
        h[:, 0] = nxt
        return logits, dict(state, h=h), np.full((len(token), 49), 1 / 49, np.float32)


# root 0: 5 is likelier than 4, but every sentence after 5 is unlikely
TRAP = {
    0: {5: (0.5, 1), 4: (0.4, 2), 3: (0.1, 3)},
    1: {6: (0.35, 4), 7: (0.3, 4), 3: (0.25, 4), EOS: (0.1, 5)},
    2: {6: (0.95, 6), EOS: (0.05, 5)},
}
# root 10: the greedy sentence is also the best
EASY = {10: {5: (0.9, 11), 4: (0.1, 12)}, 11: {6: (0.9, 13), EOS: (0.1, 14)}}


def test_beam_search_finds_the_likelier_sentence_greedy_misses():
    model = Tree(TRAP)
    greedy = decode(model, _state(1), DecodingOptions(BOS, EOS, max_len=6))
    beam = decode(model, _state(1), DecodingOptions(BOS, EOS, max_len=6, beam_size=3))
    assert greedy.tokens.tolist() == [[5, 6, EOS]]  # p = 0.5 * 0.35 = 0.175
    assert beam.tokens.tolist() == [[4, 6, EOS]]  # p = 0.4 * 0.95 = 0.38
    assert model.calls[-1] == 3 and beam.alphas.shape == (1, beam.steps, 49)


def test_beams_of_several_images_stay_apart():
    state = _state(2)
    state["h"][:, 1] = [10, 0]  # image 0 starts at EASY's root, image 1 at TRAP's
    out = decode(Tree({**TRAP, **EASY}), state, DecodingOptions(BOS, EOS, max_len=6, beam_size=3))
    assert out.tokens.tolist() == [[5, 6, EOS], [4, 6, EOS]]


def test_beam_of_one_is_greedy():
    """The beam decoder itself, driven with one beam, finds what greedy finds (the trap's
    greedy path), step for step."""
    opts = DecodingOptions(BOS, EOS, max_len=6)
    a = decode(Tree(TRAP), _state(1), opts)
    b = decode(Tree(TRAP), _state(1), opts, BeamSearchDecoder(1, EOS, opts))
    assert a.tokens.tolist() == b.tokens.tolist() and a.steps == b.steps


class Babbler:
    """A decoder that always prefers the tokens of a loop ("a man in a blue shirt and a blue
    shirt and ..."): its logits rank `order` from the most to the least likely at every step,
    after a scripted start."""

    def __init__(self, script: list[list[int]], vocab: int = 12):
        self.script, self.vocab, self.t = script, vocab, 0

    def step(self, token, state):
        ranks = self.script[min(self.t, len(self.script) - 1)]
        logits = np.full((len(token), self.vocab), -10.0, np.float32)
        for r, tok in enumerate(ranks):
            logits[:, tok] = 5.0 - r
        self.t += 1
        return logits, state, np.full((len(token), 49), 1 / 49, np.float32)


def _words(tokens):
    return [int(t) for t in tokens if t != EOS]


def test_no_repeat_blocks_a_word_thrice_and_a_phrase_a_third_time():
    from runtime.model.decoding import degenerate

    # plain greedy says 5 5 5 5 ...; with the block it must take the next-ranked words
    loop = [[5, 6, 7, 8, 9, 10, 11, EOS]]
    plain = decode(Babbler(loop), _state(1), DecodingOptions(BOS, EOS, max_len=12))
    assert _words(plain.tokens[0]) == [5] * 12
    out = decode(Babbler(loop), _state(1), DecodingOptions(BOS, EOS, max_len=12, no_repeat=True))
    words = _words(out.tokens[0])
    assert all(a != b for a, b in zip(words, words[1:]))  # never the same word twice in a row
    text = " ".join(f"w{t}" for t in words)
    assert degenerate(text, ()) is None, text
    # a two-word loop, "6 7 6 7 6 7": the bigram may come twice, never a third time
    pair = [[6, 7, 8, EOS], [7, 6, 8, EOS]]
    out = decode(Babbler(pair), _state(1), DecodingOptions(BOS, EOS, max_len=10, no_repeat=True))
    words = _words(out.tokens[0])
    grams = list(zip(words, words[1:]))
    assert (
        max(grams.count(g) for g in grams) <= 2
        and degenerate(" ".join(map(str, words)), ()) is None
    )


def test_a_caption_at_the_length_limit_never_ends_on_a_dangling_word():
    A, OF = 9, 10  # "a" and "of": the model wants "... 5 a 6 a 6 of ..." forever
    script = [[5, A], [A, 6], [6, A], [A, OF], [OF, 6], [6, A]]
    opts = DecodingOptions(BOS, EOS, max_len=6, dangling=(A, OF))
    out = decode(Babbler(script), _state(1), opts)
    words = _words(out.tokens[0])
    assert out.tokens[0][-1] == EOS and words and words[-1] not in (A, OF)
    # and eos never follows a dangling word, even before the limit
    ends = [[5, EOS], [A, EOS], [EOS, 6]]  # after "5 a" the model wants eos
    out = decode(Babbler(ends), _state(1), DecodingOptions(BOS, EOS, max_len=8, dangling=(A,)))
    assert _words(out.tokens[0])[-1] != A


def test_greedy_and_beam_report_the_mean_token_log_probability():
    model = Scripted([[5, 6, EOS]])
    out = decode(model, _state(1), DecodingOptions(BOS, EOS, max_len=10))
    # logits 5 for the scripted token and 0 for the other 7: log p = 5 - log(e^5 + 7)
    assert np.isclose(out.logprob[0], 5 - np.log(np.exp(5) + 7))
    beam = decode(Tree(TRAP), _state(1), DecodingOptions(BOS, EOS, max_len=6, beam_size=3))
    assert np.isclose(beam.logprob[0], np.log(0.4 * 0.95 * 1.0) / 3, atol=1e-3)


def test_degenerate_names_why():
    from runtime.model.decoding import degenerate

    assert degenerate("a a a a") == "'a' three times in a row"
    assert (
        degenerate("a man in a blue shirt and a blue shirt and a blue shirt")
        == "'a blue' three times"
    )
    assert degenerate("a dog is riding a bike on a") == "ends on 'a'"
    assert degenerate("a black dog runs through the snow") is None


def test_never_tokens_are_never_generated():
    UNK = 3  # the model's favourite word is <unk>, which the text would silently drop
    out = decode(
        Babbler([[UNK, 5, EOS], [UNK, EOS]]),
        _state(1),
        DecodingOptions(BOS, EOS, max_len=6, never=(UNK,)),
    )
    assert UNK not in out.tokens[0].tolist() and out.tokens[0].tolist()[:2] == [5, EOS]


def test_the_one_row_greedy_path_chooses_and_scores_as_the_batched_one():
    """A camera frame's caption takes GreedyDecoder's one-row path; a batch takes the
    vectorised one. On random logits under every rule (bans hit often with V=8) both must pick
    the same tokens and give the same log-probability."""
    rng = np.random.default_rng(0)
    opts = DecodingOptions(BOS, EOS, max_len=9, no_repeat=True, dangling=(5, 6), never=(0, BOS))
    hits = 0
    for _ in range(200):
        one, two = GreedyDecoder(EOS, opts), GreedyDecoder(EOS, opts)
        t1 = np.array([[BOS]])
        t2 = np.array([[BOS], [BOS]])
        for _ in range(opts.max_len):
            logits = rng.normal(0, 2, (1, V)).astype(np.float32)
            hits += int(logits[0].argmax()) in (0, BOS, int(t1[0, -1]))
            t1, done1, _ = one.update(t1, logits)
            t2, _, _ = two.update(t2, np.repeat(logits, 2, axis=0))
            assert t1[0].tolist() == t2[0].tolist()
            assert done1 == (t1[0, -1] == EOS)
            if done1:
                break
        assert one.lengths[0] == two.lengths[0]
        np.testing.assert_allclose(one.scores[0], two.scores[0], rtol=1e-5)
    assert hits > 100  # the rules did have to overrule the argmax

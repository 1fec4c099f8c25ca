"""Training: teacher forcing over cached backbone features, with the backbone frozen.

    python -m export train --train data/scenes-train --val data/scenes-val --out runs/default/model.pt

Loss is cross-entropy on the next token plus SAT's doubly stochastic attention regulariser,
alpha_c * mean_i (1 - sum_t alpha_ti)^2, which pushes the decoder to look at every region over a
caption. The checkpoint keeps the trainable weights (head and decoder), the model config and the
vocabulary; the backbone is always the packaged ImageNet EfficientNet-Lite0.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from export.datasets import read_jsonl
from export.features import cache_features, load_images
from export.model import CaptionModel, ModelConfig
from export.torch_backend import TorchStepModel
from runtime.decoding import DecodingOptions, decode, initial_state
from runtime.errors import InputError
from runtime.vocab import Vocab, normalize


@dataclass(frozen=True)
class TrainConfig:
    train: str  # caption JSONL (or its folder) to train on
    val: str | None = None  # held-out JSONL: exact-match of greedy captions picks the best epoch
    out: str = "runs/default/model.pt"  # checkpoint path
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3  # Adam, cosine-decayed to zero over the run
    alpha_c: float = 0.1  # weight of the doubly stochastic attention regulariser; SAT's 1.0
    # outweighs the word loss ~10x with 49 regions and short captions, and blurs attention
    feature_noise: float = 0.1  # multiplicative noise on cached features, so captions do not
    # hinge on perturbations the size of int8 rounding
    captions: str = "first"  # "first": train on each image's canonical caption; "all": every one
    int8_mix: float = 0.5  # share of samples trained on int8-backbone features, so that the
    # int8 bundle says what fp32 says (quantisation-aware training of the decoder)
    calib: str | None = None  # JSONL whose first n_calib images calibrate int8 (default: train)
    n_calib: int = 128
    max_len: int = 24  # longest caption decoded, eos included
    min_freq: int = 1  # words seen fewer times become <unk>
    seed: int = 0
    cache_dir: str = "data/cache"  # where backbone features are memory-mapped
    init: str | None = None  # start from this checkpoint's weights and vocabulary


def load_checkpoint(path: str | Path) -> tuple[CaptionModel, Vocab, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = CaptionModel(ModelConfig(**ckpt["config"]))
    model.load_state_dict({**model.trainable_state(), **ckpt["state"]}, strict=False)
    missing = set(model.trainable_state()) - set(ckpt["state"])
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)[:3]}")
    return model.eval(), Vocab(tuple(ckpt["vocab"])), ckpt


def greedy_captions(step_model: TorchStepModel, feats: np.ndarray, vocab: Vocab, max_len: int,
                    batch: int = 256) -> list[str]:
    """Greedy captions for cached feature maps, through the runtime's decode loop."""
    opts = DecodingOptions(bos=vocab.bos, eos=vocab.eos, max_len=max_len)
    out = []
    for i in range(0, len(feats), batch):
        state = initial_state(step_model.encode_features(feats[i:i + batch]))
        out += [vocab.decode(row) for row in decode(step_model, state, opts).tokens]
    return out


def _pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


def train(cfg: TrainConfig) -> Path:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.captions not in ("first", "all"):
        raise InputError(f"--captions {cfg.captions!r}: choose first or all")
    samples = read_jsonl(cfg.train)
    pairs = [(i, c) for i, s in enumerate(samples)
             for c in (s.captions[:1] if cfg.captions == "first" else s.captions)]
    if cfg.init:
        model, vocab, _ = load_checkpoint(cfg.init)
    else:
        vocab = Vocab.build((c for _, c in pairs), cfg.min_freq)
        model = CaptionModel(ModelConfig(vocab_size=len(vocab)))
    backbone = model.backbone
    feats = torch.from_numpy(np.array(cache_features(samples, backbone, cfg.cache_dir)))
    val = read_jsonl(cfg.val) if cfg.val else []
    val_feats = cache_features(val, backbone, cfg.cache_dir) if val else None
    if cfg.int8_mix:
        calib = load_images(read_jsonl(cfg.calib or cfg.train)[: cfg.n_calib])
        feats8 = torch.from_numpy(np.array(cache_features(samples, backbone, cfg.cache_dir,
                                                          int8_calibration=calib)))
        val_feats8 = cache_features(val, backbone, cfg.cache_dir, int8_calibration=calib) if val else None

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.epochs * -(-len(pairs) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.05)
    tokens = [vocab.encode(c)[: cfg.max_len + 1] for _, c in pairs]
    image_of = np.array([i for i, _ in pairs])
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    best, start = float("-inf"), time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(pairs))
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}")
        for b in bar:
            idx = order[b: b + cfg.batch_size]
            seq = _pad([tokens[i] for i in idx], vocab.pad)
            fmap = feats[image_of[idx]].float()
            if cfg.int8_mix:
                use8 = torch.from_numpy(rng.random(len(idx)) < cfg.int8_mix)
                fmap[use8] = feats8[image_of[idx][use8.numpy()]].float()
            if cfg.feature_noise:
                fmap = fmap * (1 + cfg.feature_noise * torch.randn_like(fmap))
            logits, alphas = model.decoder(*model.head(fmap), seq[:, :-1])
            target = seq[:, 1:]
            mask = (target != vocab.pad).float()
            ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=vocab.pad)
            coverage = (alphas * mask.unsqueeze(2)).sum(dim=1)
            loss = ce + cfg.alpha_c * ((1.0 - coverage) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            bar.set_postfix(ce=f"{ce.item():.3f}")
        score = -ce.item()  # without a validation set: the last batch's loss
        if val:
            model.eval()
            got = greedy_captions(TorchStepModel(model), val_feats, vocab, cfg.max_len)
            score = float(np.mean([g == normalize(s.captions[0]) for g, s in zip(got, val)]))
            line = f"epoch {epoch + 1}: val exact-match {score:.3f}"
            if cfg.int8_mix:
                got8 = greedy_captions(TorchStepModel(model), val_feats8, vocab, cfg.max_len)
                line += f", int8 agreement {np.mean([a == b for a, b in zip(got, got8)]):.3f}"
            print(line, flush=True)
        if score >= best:
            best = score
            torch.save({"config": model.cfg.to_dict(), "vocab": list(vocab.words),
                        "state": model.trainable_state(), "train": asdict(cfg),
                        "metrics": {"epoch": epoch + 1, "val_exact_match": score,
                                    "minutes": (time.time() - start) / 60}}, out)
    print(f"best val exact-match {best:.3f}; saved {out} in {(time.time() - start) / 60:.1f} min")
    return out

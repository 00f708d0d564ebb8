"""Low-resource fine-tuning (``ft``): the whole encoder plus a linear CTC head, on a few labelled minutes.

Libri-light's setting, scaled to what a CPU runs: a seeded subset of the training
utterances totalling ``minutes`` of audio (10 minutes or 1 hour), phones when the
corpus has phone alignments (PER) and characters otherwise (CER), a fixed number of
steps with warm-up then linear decay, SpecAugment-style masks on the input
features, dev scored 8 times (``eval_every``) and the best-dev weights scored on
test, for each learning rate of a small sweep. A checkpoint and a random
initialisation (``evaluate``'s random-init baseline: a named preset, each init seed)
get the same subset, steps and sweep, so the difference is what pre-training gives
(name the checkpoint's preset for a like-for-like shape); this is where BEST-RQ's
gains are usually reported.

Only speechrq encoders are fine-tuned (the filterbank "encoder" has nothing to
train); the log-Mel normaliser stays the checkpoint's.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..features import check_logmel
from ..text import char_inventory, error_rate, greedy_ctc_text
from .probes import ProbeResult, label_of


@dataclass(frozen=True)
class FinetuneConfig:
    minutes: float = 10.0  # labelled audio: 10 (Libri-light's 10 min) or 60 (1 h)
    steps: int = 200
    lrs: tuple[float, ...] = (2e-3,)
    batch_seconds: float = 60.0  # audio per step
    warmup: float = 0.1  # share of the steps
    eval_every: int | None = None  # steps between dev scores; None: steps // 8
    time_masks: int = 2  # SpecAugment on the 10 ms input frames: masks of up to 20 frames and 10 Mel bins
    freq_masks: int = 2
    max_eval_utterances: int = 400  # dev is scored often: a seeded sample of at most this many


def labelled_subset(cuts: list, minutes: float, seed: int = 0) -> list:
    """A seeded shuffle of ``cuts`` cut off once ``minutes`` of audio are in (always the same for one seed)."""
    cuts = sorted(cuts, key=lambda c: c.id)
    random.Random(seed).shuffle(cuts)
    out, total = [], 0.0
    for c in cuts:
        if total >= 60.0 * minutes:
            break
        out.append(c)
        total += c.duration
    return out


def _features(enc, cuts: list) -> list[torch.Tensor]:
    """Normalised log-Mel ``[T_in, 80]`` of each cut, in order (computed once, reused every step)."""
    from lhotse import CutSet

    from ..data.batching import make_loader

    by_id = {}
    device = enc.normalizer.mean.device
    for batch in make_loader(CutSet.from_cuts(cuts), 120.0, shuffle=False):
        if not len(batch["cuts"]):
            continue
        audio = batch["audio"].to(device)
        feats, lens = enc.features(audio, batch["audio_lens"].to(device))
        check_logmel(feats, lens, audio, batch["cuts"], "normalised log-Mel", where="ft: ")  # the encoder trains on them
        for i, cut in enumerate(batch["cuts"]):
            by_id[cut.id] = feats[i, : int(lens[i])].cpu()
    return [by_id[c.id] for c in cuts if c.id in by_id]


def _pad(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([f.shape[0] for f in feats])
    return nn.utils.rnn.pad_sequence(feats, batch_first=True), lens


def spec_augment(x: torch.Tensor, lens: torch.Tensor, time_masks: int, freq_masks: int, gen: torch.Generator) -> torch.Tensor:
    """Zero ``time_masks`` spans of up to 20 frames and ``freq_masks`` bands of up to 10 bins per utterance, batched."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    frames, bins = torch.arange(t), torch.arange(f)
    for _ in range(time_masks):
        width = torch.randint(0, 21, (b, 1), generator=gen)
        start = (torch.rand(b, 1, generator=gen) * (lens[:, None] - width).clamp_min(1)).long()
        keep &= ~((frames >= start) & (frames < start + width))[:, :, None]
    for _ in range(freq_masks):
        width = torch.randint(0, 11, (b, 1), generator=gen)
        start = (torch.rand(b, 1, generator=gen) * (f - width)).long()
        keep &= ~((bins >= start) & (bins < start + width))[:, None, :]
    return x * keep


class CTCFinetuner(nn.Module):
    """A (trainable) speech encoder and a linear CTC head over its last state."""

    def __init__(self, encoder: nn.Module, vocab: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.dim, vocab + 1)  # + blank (index 0)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T_in, 80]`` features -> log-probabilities ``[B, T, V + 1]`` and frame lengths ``[B]``."""
        x, out_lens = self.encoder(feats, lens)
        return self.head(x).log_softmax(-1), out_lens


def finetune(enc, cuts: dict[str, list], cfg: FinetuneConfig = FinetuneConfig(), seeds=(0,), progress: bool = False) -> list[ProbeResult]:
    """Fine-tune ``enc`` (a :class:`~speechrq.encoders.FrozenEncoder`; a copy is trained) on ``cfg.minutes`` of
    ``cuts["train"]``, select on ``cuts["dev"]``, score ``cuts["test"]``: PER with phone alignments, else CER.
    One result per seed of ``seeds``; the features are computed once for all of them."""
    from tqdm import tqdm

    from ..errors import SpeechrqError

    task = "pr" if all(label_of("pr", c) for c in cuts["train"][:20]) else "asr"
    train = [c for c in labelled_subset(cuts["train"], cfg.minutes) if label_of(task, c)]
    rng = random.Random(0)
    dev = [c for c in cuts["dev"] if label_of(task, c)]
    dev = sorted(rng.sample(dev, min(len(dev), cfg.max_eval_utterances)), key=lambda c: c.id)
    test = [c for c in cuts["test"] if label_of(task, c)]
    if not train or not dev or not test:
        raise SpeechrqError("ft: needs phone alignments or transcripts in train, dev and test")
    if task == "pr":
        tokens = lambda c: list(label_of("pr", c))  # noqa: E731
        vocab = sorted({t for c in train for t in tokens(c)})
    else:  # characters, the space as "|" so that CER counts word boundaries
        tokens = lambda c: ["|" if ch == " " else ch for ch in label_of("asr", c)]  # noqa: E731
        vocab = ["|" if ch == " " else ch for ch in char_inventory(label_of("asr", c) for c in train)]
    index = {t: k + 1 for k, t in enumerate(vocab)}
    data = {name: (_features(enc, cs), [tokens(c) for c in cs]) for name, cs in (("train", train), ("dev", dev), ("test", test))}
    device = "cuda" if torch.cuda.is_available() else "cpu"

    test_languages = [c.supervisions[0].language for c in test]
    multilingual = len(set(test_languages) - {None}) > 1

    def score(model, split, language: str | None = None) -> float:
        """The error rate on ``split``, or on its utterances of one ``language``."""
        feats, labels = data[split]
        if language is not None:
            keep = [i for i, lang in enumerate(test_languages) if lang == language]
            feats, labels = [feats[i] for i in keep], [labels[i] for i in keep]
        model.eval()
        hyps = []
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
        with torch.no_grad():
            for s in range(0, len(order), 32):
                idx = order[s : s + 32]
                x, lens = _pad([feats[i] for i in idx])
                logp, out_lens = model(x.to(device), lens.to(device))
                hyps += list(zip(idx, greedy_ctc_text(logp.cpu(), out_lens.cpu(), vocab, sep=" ")))
        hyps = [h for _, h in sorted(hyps)]
        refs = [" ".join(lab) for lab in labels]
        return error_rate(refs, hyps)

    def batches(g: random.Random):
        """Endless shuffled batches of about ``batch_seconds`` of audio, similar lengths together."""
        feats = data["train"][0]
        while True:
            order = list(range(len(feats)))
            g.shuffle(order)
            chunks = [sorted(order[s : s + 64], key=lambda i: feats[i].shape[0]) for s in range(0, len(order), 64)]
            for chunk in chunks:
                batch, frames = [], 0
                for i in chunk:
                    if batch and frames + feats[i].shape[0] > cfg.batch_seconds * 100:
                        yield batch
                        batch, frames = [], 0
                    batch.append(i)
                    frames += feats[i].shape[0]
                if batch:
                    yield batch

    eval_every = cfg.eval_every or max(1, cfg.steps // 8)
    results = []
    for seed in seeds:  # the features above serve every seed
        best, sweep = None, {}
        for lr in cfg.lrs:
            torch.manual_seed(seed)
            model = CTCFinetuner(copy.deepcopy(enc.encoder), len(vocab)).to(device)
            for p in model.parameters():
                p.requires_grad_(True)
            # multi-tensor AdamW: on a CPU faster than torch's default loop over tensors, the same bits
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98), foreach=True)
            warm = max(1, int(cfg.warmup * cfg.steps))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
            g, gen = random.Random(seed), torch.Generator().manual_seed(seed)
            stream, lr_best = batches(g), None
            feats, labels = data["train"]
            for step in tqdm(range(1, cfg.steps + 1), desc=f"ft lr {lr:g} seed {seed}", unit="step", disable=not progress, leave=False):
                model.train()
                idx = next(stream)
                x, lens = _pad([feats[i] for i in idx])
                x = spec_augment(x, lens, cfg.time_masks, cfg.freq_masks, gen)
                logp, out_lens = model(x.to(device), lens.to(device))
                targets = [torch.tensor([index[t] for t in labels[i]]) for i in idx]
                loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(targets).to(device), out_lens.cpu(),
                                  torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                sched.step()
                if step % eval_every == 0 or step == cfg.steps:
                    d = score(model, "dev")
                    lr_best = d if lr_best is None else min(lr_best, d)
                    if best is None or d < best[0]:
                        best = (d, lr, step, copy.deepcopy(model.state_dict()), model)
            sweep[f"{lr:g}"] = lr_best
        dev_score, lr, step, state, model = best
        model.load_state_dict(state)
        by_language = {lang: score(model, "test", lang) for lang in sorted(set(test_languages) - {None})} if multilingual else {}
        results.append(ProbeResult("ft", "per" if task == "pr" else "cer", score(model, "test"), dev_score, lr, step, [], sweep,
                                   by_language=by_language))
    return results

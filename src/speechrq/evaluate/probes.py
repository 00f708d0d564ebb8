"""SUPERB-style probes on a frozen encoder's cached hidden states: ASR, SID, IC, ER.

Downstream models are shaped like SUPERB's, scaled down for CPU:

- **ASR**: weighted sum -> linear -> 2-layer BiLSTM -> characters, CTC; greedy
  decoding; WER by jiwer.
- **SID**, **ER**, **LID**, **sex** (the speaker's, ``supervision.gender``): weighted sum -> linear -> mean pool ->
  linear; accuracy.
- **IC**: the same with one classifier per slot (action, object, location);
  an utterance is right when every slot is.
- **PR** (SUPERB's phone recognition): weighted sum -> linear -> phones, CTC;
  greedy decoding; PER. Phones come from the corpus's alignments: TIMIT's 61
  folded to 39, closures and pauses folded into silence, silence left out
  (:func:`phone_sequence`); the embedded corpus's espeak phones as they are.

Sizes come from a preset (:data:`PROBE_PRESETS`): ``cpu`` (the default, minutes on
2 cores) or ``superb`` (SUPERB's widths: a 2 x 1024 BiLSTM for ASR, 256 for the
utterance heads), for a GPU.

Each task trains one probe per learning rate in ``lrs``, keeps the epoch with the
best dev score, and reports that model's test score (SUPERB results depend on
the learning rate, so a small sweep is part of the protocol). The layer weights
of the selected probe are returned with the scores.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import name_list
from ..encoders.cache import pad_states, utterance_means
from ..errors import SpeechrqError
from ..text import char_inventory, error_rate, greedy_ctc_text, normalize_text, written_without_spaces
from .featurizer import WeightedSum

TASKS = ("asr", "sid", "ic", "er", "pr", "ft", "lid", "sex")  # ft: fine-tuning the whole encoder (:mod:`speechrq.evaluate.finetune`)
SUPERB_TASKS = ("asr", "sid", "ic", "er")  # the paper's Table 1 and its Avg
CTC_TASKS = ("asr", "pr")  # sequence tasks: lower error is better
# hidden: the utterance heads' projection; asr_hidden / asr_layers: the CTC probe's BiLSTM
PROBE_PRESETS = {
    "cpu": {"hidden": 128, "asr_hidden": 96, "asr_layers": 1},
    "superb": {"hidden": 256, "asr_hidden": 1024, "asr_layers": 2},
}
SLOTS = ("action", "object", "location")
# TIMIT's 61 phones folded to the 39 of Lee & Hon (1989), as SUPERB PR scores them; closures,
# pauses and h# become silence, q (glottal stop) is dropped
TIMIT_FOLD = {"ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l", "em": "m", "en": "n", "nx": "n",
              "eng": "ng", "zh": "sh", "ux": "uw", "pcl": "sil", "tcl": "sil", "kcl": "sil", "bcl": "sil", "dcl": "sil", "gcl": "sil",
              "h#": "sil", "pau": "sil", "epi": "sil", "q": ""}
SILENCE = {"sil", "sp", "spn", ""}


def fold_phone(symbol: str) -> str | None:
    """A phone symbol as phone recognition and target analyses score it; None for silence."""
    folded = TIMIT_FOLD.get(symbol, symbol)
    return None if folded in SILENCE else folded


def phone_sequence(cut) -> list[str]:
    """The cut's phones in order (folded, silence left out), from its phone alignment."""
    items = (cut.supervisions[0].alignment or {}).get("phone", [])
    return [p for p in (fold_phone(it.symbol) for it in items) if p is not None]


def label_of(task: str, cut):
    """The cut's label for ``task``, or None when the cut has none."""
    sup = cut.supervisions[0]
    custom = sup.custom or {}
    if task == "asr":
        return normalize_text(sup.text) or None
    if task == "sid":
        return sup.speaker
    if task == "er":
        return custom.get("emotion")
    if task == "lid":  # ML-SUPERB's language identification: the supervision's language
        return sup.language
    if task == "sex":  # the speaker's sex, as the corpus gives it (LibriSpeech's SPEAKERS.TXT: F, M)
        return sup.gender
    if task == "ic":
        slots = tuple(custom.get(s) for s in SLOTS)
        return slots if all(slots) else None
    if task == "pr":
        return tuple(phone_sequence(cut)) or None
    if task == "ft":  # phones where the corpus has them, else characters
        return label_of("pr", cut) or label_of("asr", cut)
    raise ValueError(f"task {task!r}: choose from {', '.join(TASKS)}")


@dataclass
class ProbeResult:
    task: str
    metric: str  # "wer" or "per" (lower is better), or "accuracy"
    test: float
    dev: float
    lr: float
    epoch: int  # the selected epoch (for ft: the selected step)
    layer_weights: list[float]
    sweep: dict[str, float] = field(default_factory=dict)  # lr -> best dev score
    # with several probe seeds: test is their mean, and each seed's test score is kept
    seed_tests: list[float] = field(default_factory=list)
    test_std: float = 0.0
    # with several folds (leave one session out): test is their mean, and each fold's test score is kept
    fold_tests: dict[str, float] = field(default_factory=dict)
    # on a corpus of several languages: the test score of each language's utterances (ML-SUPERB's per-language columns)
    by_language: dict[str, float] = field(default_factory=dict)


def _mean_by_language(results: list["ProbeResult"]) -> dict[str, float]:
    import statistics

    if not all(r.by_language for r in results):
        return {}
    return {lang: statistics.fmean(r.by_language[lang] for r in results) for lang in results[0].by_language}


def over_seeds(results: list["ProbeResult"]) -> "ProbeResult":
    """Probe runs of several seeds as one result: the mean test and dev scores, the test spread, and the first seed's details."""
    import statistics
    from dataclasses import replace

    tests = [r.test for r in results]
    if len(tests) == 1:
        return results[0]
    # dev is the mean over seeds too: what a study chooses on dev (a step, a baseline, a recipe) sees every seed
    return replace(results[0], test=statistics.fmean(tests), test_std=statistics.stdev(tests), seed_tests=tests,
                   dev=statistics.fmean(r.dev for r in results),
                   by_language=_mean_by_language(results))


def over_folds(results: dict[str, "ProbeResult"]) -> "ProbeResult":
    """One result per fold as one result: test, dev and layer weights are fold means, ``fold_tests`` each
    fold's test; with probe seeds, ``seed_tests`` are each seed's fold mean, so ``test_std`` is seed noise."""
    import statistics
    from dataclasses import replace

    if len(results) == 1:
        return next(iter(results.values()))
    rs = list(results.values())
    seed_tests = [statistics.fmean(t) for t in zip(*(r.seed_tests for r in rs))] if all(r.seed_tests for r in rs) else []
    weights = [statistics.fmean(w) for w in zip(*(r.layer_weights for r in rs))]
    return replace(rs[0], test=statistics.fmean(r.test for r in rs), dev=statistics.fmean(r.dev for r in rs), layer_weights=weights,
                   seed_tests=seed_tests, test_std=statistics.stdev(seed_tests) if len(seed_tests) > 1 else 0.0,
                   fold_tests={name: r.test for name, r in results.items()}, by_language=_mean_by_language(rs))


def over_inits(results: list["ProbeResult"]) -> tuple["ProbeResult", list[float]]:
    """The results of several weight draws of one encoder (the random-init baseline's init seeds) as one result, and
    each draw's test score.

    ``test`` is the mean over every (init seed, probe seed) score, ``seed_tests`` those scores draw by draw and
    ``test_std`` their standard deviation, so the spread of the weight draw is in the interval. ``dev``, the layer
    weights, the lr sweep and each fold's and language's score are means over the draws; ``lr`` and ``epoch`` are
    the first draw's."""
    import statistics
    from dataclasses import replace

    if len(results) == 1:
        return results[0], [results[0].test]
    pooled = [t for r in results for t in (r.seed_tests or [r.test])]

    def mean_of(dicts: list[dict]) -> dict:
        return {k: statistics.fmean(d[k] for d in dicts) for k in dicts[0]} if all(dicts) and all(d.keys() == dicts[0].keys() for d in dicts) else {}

    first = results[0]
    return replace(first, test=statistics.fmean(pooled), dev=statistics.fmean(r.dev for r in results), seed_tests=pooled,
                   test_std=statistics.stdev(pooled), layer_weights=[statistics.fmean(w) for w in zip(*(r.layer_weights for r in results))],
                   sweep=mean_of([r.sweep for r in results]), fold_tests=mean_of([r.fold_tests for r in results]),
                   by_language=mean_of([r.by_language for r in results])), [r.test for r in results]


class UtteranceProbe(nn.Module):
    """SUPERB's utterance-level downstream: weighted sum, linear, mean pool over frames, one linear head per slot.

    The weighted sum and the projection are linear, so mean pooling commutes with both: the
    probe reads states already averaged over each utterance's frames (``[B, L + 1, dim]``,
    :meth:`StateStore.pooled`) and computes the same function with T times less work.
    """

    def __init__(self, num_states: int, dim: int, hidden: int, num_classes: list[int]):
        super().__init__()
        self.featurizer = WeightedSum(num_states)
        self.proj = nn.Linear(dim, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in num_classes)

    def forward(self, pooled_states: torch.Tensor) -> list[torch.Tensor]:
        pooled = self.proj(self.featurizer(pooled_states[:, :, None])[:, 0])  # [B, L + 1, dim] -> [B, hidden]
        return [head(pooled) for head in self.heads]


class CTCProbe(nn.Module):
    def __init__(self, num_states: int, dim: int, hidden: int, layers: int = 2, vocab: int = 28):
        super().__init__()
        self.featurizer = WeightedSum(num_states)
        self.proj = nn.Linear(dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, vocab + 1)  # the characters of the training transcripts + blank (index 0)

    def forward(self, states: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.featurizer(states))  # padded frames: left out by the packing
        packed = nn.utils.rnn.pack_padded_sequence(x, lens.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y).log_softmax(-1)  # [B, T, V]


class LinearCTCProbe(nn.Module):
    """SUPERB PR's downstream: weighted sum, then one linear layer to the phones (+ blank), CTC."""

    def __init__(self, num_states: int, dim: int, vocab: int):
        super().__init__()
        self.featurizer = WeightedSum(num_states)
        self.out = nn.Linear(dim, vocab + 1)  # + blank (index 0)

    def forward(self, states: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        # padded frames need no mask: CTC reads each utterance's first lens frames, and gives the rest no gradient
        return self.out(self.featurizer(states)).log_softmax(-1)  # [B, T, V]


class StateStore:
    """What probes read of one encoder's hidden states: frames ``[L + 1, T, dim]`` for the CTC probes, utterance means
    ``[L + 1, dim]`` for the others.

    Cached frames are held in memory (float16) when ``in_memory``, else read from the cache per batch; means are
    held in memory (float32, small). What the cache does not hold is computed by ``recompute``
    (:class:`~speechrq.encoders.cache.Recomputer`) when read, the same bits as cached states; without one, a missing
    utterance is a KeyError. NaN or inf in states read is refused in one line naming the utterances.
    """

    def __init__(self, cache, ids: list[str], mean_ids: list[str] = (), recompute=None, in_memory: bool = True):
        self.cache, self.recompute = cache, recompute
        self.states: dict[str, torch.Tensor] = {}
        self._means: dict[str, torch.Tensor] = {}
        self.shape: tuple[int, int] | None = None  # (L + 1, dim)
        missing = []
        for i in ids:
            if in_memory:
                a = cache.get(i)
                if a is not None:
                    self.states[i] = torch.from_numpy(a)
                    continue
            elif cache.path(i).exists():
                continue
            missing.append(i)
        for i in mean_ids:
            m = cache.get_mean(i)
            if m is not None:
                self._means[i] = torch.from_numpy(m)
            elif i not in self.states and not cache.path(i).exists():
                missing.append(i)
        self._checked(self.states)
        self._checked(self._means)
        if missing and recompute is None:
            raise KeyError(f"hidden states of {missing[0]} are not cached")
        first = next(iter(self.states.values()), None)
        if first is not None:
            self.shape = (first.shape[0], first.shape[2])
        elif self._means:
            m = next(iter(self._means.values()))
            self.shape = (m.shape[0], m.shape[1])

    def _checked(self, arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # a probe must never train on NaN or inf (a cache written before states were checked, float16 overflow)
        if bad := [i for i, a in arrays.items() if not bool(torch.isfinite(a).all())]:
            raise SpeechrqError(f"hidden states cached in {self.cache.dir}: NaN or inf in utterance {name_list(bad, len(arrays))}; "
                                "delete that folder to compute them again")
        return arrays

    def frames(self, ids: list[str]) -> list[torch.Tensor]:
        """Each utterance's float16 ``[L + 1, T_i, dim]``: from memory, the cache, or computed (one call for all missing)."""
        found = {i: self.states[i] for i in ids if i in self.states}
        for i in ids:
            if i not in found and (a := self.cache.get(i)) is not None:
                found[i] = torch.from_numpy(a)
        if missing := [i for i in ids if i not in found]:
            if self.recompute is None:
                raise KeyError(f"hidden states of {missing[0]} are not cached")
            computed = self.recompute.states(missing)
            if lost := [i for i in missing if i not in computed]:
                raise SpeechrqError(f"hidden states: the audio of {name_list(lost)} no longer loads (it did when the probe's "
                                    "utterances were chosen)")
            found |= {i: torch.from_numpy(a) for i, a in computed.items()}
        if self.shape is None and found:
            a = next(iter(found.values()))
            self.shape = (a.shape[0], a.shape[2])
        fresh = self._checked({i: found[i] for i in ids if i not in self.states})  # read now: checked as read
        return [self.states[i] if i in self.states else fresh[i] for i in ids]

    def batch(self, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, L + 1, T, dim]`` float32, padded, and lengths ``[B]``."""
        return pad_states(self.frames(ids))

    def pooled(self, ids: list[str]) -> torch.Tensor:
        """Each utterance's states averaged over its frames: ``[B, L + 1, dim]`` float32 (cached, or computed once per
        utterance from its frames by :func:`~speechrq.encoders.cache.utterance_means`, the same bits)."""
        if todo := [i for i in ids if i not in self._means]:
            for i, a in zip(todo, self.frames(todo)):
                self._means[i] = utterance_means(a)
                if self.shape is None:
                    self.shape = (a.shape[0], a.shape[2])
        return torch.stack([self._means[i] for i in ids])


def _batches(items: list, size: int, rng: random.Random | None):
    items = list(items)
    if rng is not None:
        rng.shuffle(items)
    for s in range(0, len(items), size):
        yield items[s : s + size]


def run_probe(task: str, store: StateStore, data: dict[str, list[tuple[str, object]]], lrs: list[float], epochs: int,
              preset: str = "cpu", batch_size: int = 32, seed: int = 0, languages: dict[str, str] | None = None) -> ProbeResult:
    """Train ``task``'s probe (sized by ``preset``) for each lr on ``data["train"]``, select on dev, score test.

    ASR's output units are the characters of the training transcripts (:func:`speechrq.text.char_inventory`),
    scored as WER, or as CER when ``languages`` (utterance id -> language) is given (a corpus of several languages,
    scored per language too, ``by_language``, as ML-SUPERB scores CER per language) or when the transcripts are
    in a script written without spaces (Mandarin, as WenetSpeech scores).
    """

    if store.shape is None:  # nothing held yet: read one utterance of the training set
        store.pooled([data["train"][0][0]]) if task not in CTC_TASKS else store.frames([data["train"][0][0]])
    num_states, dim = store.shape
    by_char = task == "asr" and (bool(languages) or written_without_spaces(lab for _, lab in data["train"]))
    if task == "asr":
        chars = char_inventory(lab for _, lab in data["train"])
        char_index = {ch: k + 1 for k, ch in enumerate(chars)}  # 0 is the blank
    elif task == "pr":
        phones = sorted({p for _, lab in data["train"] for p in lab})
        phone_index = {p: k + 1 for k, p in enumerate(phones)}  # 0 is the blank
    else:
        columns = list(zip(*[lab if task == "ic" else (lab,) for _, lab in data["train"]]))
        vocab = [sorted(set(col)) for col in columns]
        index = [{v: k for k, v in enumerate(col)} for col in vocab]

    device = "cuda" if torch.cuda.is_available() else "cpu"  # probes train on the GPU when there is one

    def encode(labels):
        if task == "ic":
            return [torch.tensor([index[s].get(lab[s], -100) for lab in labels], device=device) for s in range(len(SLOTS))]
        return [torch.tensor([index[0].get(lab, -100) for lab in labels], device=device)]

    def read(ids) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch as its probe reads it: padded frames for the CTC probes, utterance means for the others."""
        if task in CTC_TASKS:
            return tuple(t.to(device) for t in store.batch(list(ids)))
        return store.pooled(list(ids)).to(device), None

    def score(models: list, split: str | list) -> list[float]:
        """Each model's score on ``split``, every batch read once for all of them."""
        for model in models:
            model.eval()
        hyps, refs = [[] for _ in models], []
        right, total = [0] * len(models), 0
        with torch.no_grad():
            for chunk in _batches(data[split] if isinstance(split, str) else split, 64, None):
                ids, labels = zip(*chunk)
                states, lens = read(ids)
                if task in CTC_TASKS:
                    refs += list(labels) if task == "asr" else [" ".join(lab) for lab in labels]
                else:
                    gold = encode(labels)
                    total += len(ids)
                for k, model in enumerate(models):
                    if task == "asr":
                        hyps[k] += greedy_ctc_text(model(states, lens), lens, chars)
                    elif task == "pr":
                        hyps[k] += greedy_ctc_text(model(states, lens), lens, phones, sep=" ")
                    else:
                        preds = [o.argmax(-1) for o in model(states)]
                        right[k] += int(torch.stack([p == g for p, g in zip(preds, gold)]).all(0).sum())
        if task in CTC_TASKS:  # word or phone error rate: jiwer over space-separated tokens; CER over languages
            return [error_rate(refs, h, "char" if by_char else "word") for h in hyps]
        return [100.0 * r / max(total, 1) for r in right]

    better = (lambda a, b: a < b) if task in CTC_TASKS else (lambda a, b: a > b)
    # one probe per lr, trained side by side on the same batches: each batch is read (padded, cast) once for all of them.
    # Each starts from the seed's initialisation and sees the seed's batch order, as if trained alone (the same bits).
    size = PROBE_PRESETS[preset]
    models, opts = [], []
    for lr in lrs:
        torch.manual_seed(seed)
        models.append((CTCProbe(num_states, dim, size["asr_hidden"], size["asr_layers"], len(chars)) if task == "asr"
                       else LinearCTCProbe(num_states, dim, len(phones)) if task == "pr"
                       else UtteranceProbe(num_states, dim, size["hidden"], [len(v) for v in vocab])).to(device))
        opts.append(torch.optim.AdamW(models[-1].parameters(), lr=lr, weight_decay=1e-4))
    rng = random.Random(seed)
    kept: list = [None] * len(lrs)  # per lr: (best dev, its epoch, its weights), the first epoch to reach that dev
    for epoch in range(epochs):
        for model in models:
            model.train()
        for chunk in _batches(data["train"], batch_size, rng):
            ids, labels = zip(*chunk)
            states, lens = read(ids)
            if task in CTC_TASKS:
                targets = [torch.tensor([char_index[c] for c in lab] if task == "asr" else [phone_index[p] for p in lab])
                           for lab in labels]
                flat, target_lens = torch.cat(targets).to(device), torch.tensor([len(t) for t in targets])
            else:
                gold = encode(labels)
            for model, opt in zip(models, opts):
                if task in CTC_TASKS:
                    loss = F.ctc_loss(model(states, lens).transpose(0, 1), flat, lens.cpu(), target_lens, blank=0, zero_infinity=True)
                else:
                    outs = model(states)
                    loss = sum(F.cross_entropy(o, g, ignore_index=-100) for o, g in zip(outs, gold)) / len(outs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
        for k, dev in enumerate(score(models, "dev")):
            if kept[k] is None or better(dev, kept[k][0]):
                kept[k] = (dev, epoch, copy.deepcopy(models[k].state_dict()))
    sweep = {f"{lr:g}": dev for lr, (dev, _, _) in zip(lrs, kept)}
    chosen = 0  # the best dev over lrs; a tie keeps the earlier lr
    for k in range(1, len(lrs)):
        if better(kept[k][0], kept[chosen][0]):
            chosen = k
    dev, epoch, state = kept[chosen]
    lr, model = lrs[chosen], models[chosen]
    model.load_state_dict(state)
    by_language = {}
    if languages:
        for lang in sorted({languages[i] for i, _ in data["test"]}):
            by_language[lang] = score([model], [item for item in data["test"] if languages[item[0]] == lang])[0]
    metric = {"asr": "cer" if by_char else "wer", "pr": "per"}.get(task, "accuracy")
    return ProbeResult(task, metric, score([model], "test")[0], dev, lr, epoch + 1, model.featurizer.layer_weights().detach().tolist(),
                       sweep, by_language=by_language)


def superb_average(results: dict[str, ProbeResult]) -> float | None:
    """The paper's Avg: 100 - WER for ASR, then the mean with the accuracies (all four tasks needed)."""
    if not all(t in results for t in SUPERB_TASKS):
        return None
    return (100.0 - results["asr"].test + results["sid"].test + results["ic"].test + results["er"].test) / 4

"""Target quality (Latent-RQ Figures 5 and 6): do the random projections separate phones and speakers?

The quantizer's input to the codebook search is the l2-normalised random
projection of each frame (``RandomProjectionQuantizer.project``). This module
takes those projections

- of **Mel targets**: 4 stacked normalised log-Mel frames per encoder frame,
  projected by the checkpoint's Mel quantizer (stage 0's targets);
- of **latent targets of a checkpoint**: that checkpoint's encoder states at
  its target layers, standardised as a next stage with this checkpoint as θ
  would (per-dimension statistics fitted by
  :meth:`~speechrq.targets.latent.LatentTargets.fit_normalizers` on the sample
  a refresh uses: ``targets.stats_utterances`` training utterances drawn with
  ``train.seed``), and projected by **as many codebooks as Mel** (N, made from
  ``quantizer.seed``), not by the layer's N / K share: the fair comparison, so
  a layer is not judged on fewer codebooks than Mel;

and pools them per **phone segment** (frames inside the aligned segment) and
per **speaker utterance** (mean over time). :func:`rank_sources` (``speechrq targets rank``) ranks Mel and every layer of a
checkpoint the same way, adding the label-free perturbation agreement of
:mod:`speechrq.targets.rank`. Each class set is drawn with t-SNE
(PNG) and scored with numbers a test can compare: 5-nearest-neighbour accuracy
(5-fold, stratified) and the silhouette (cosine), so "stage k separates phones
better than Mel" is a measurement, not a picture.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from ..data.batching import make_loader
from ..data.corpus import seeded_subset
from ..encoders import FrozenEncoder, HiddenStateCache
from ..features import feature_batches
from ..models.conformer import ENCODER_FRAME_SECONDS, SUBSAMPLING
from ..errors import SpeechrqError
from ..targets.latent import LatentTargets
from ..targets.random_projection import RandomProjectionQuantizer, stack_frames
from ..targets.rank import DEFAULT_SIGMA, RANK_SEED
from .probes import fold_phone



def phone_spans(cut, num_frames: int, frame_shift: float = ENCODER_FRAME_SECONDS) -> list[tuple[str, int, int]]:
    """``(phone, first frame, end frame)`` on a grid of ``frame_shift`` seconds (the encoder's 40 ms); phones folded as PR scores them (TIMIT's 61
    to 39), silence, closures and pauses dropped, empty spans widened to one frame."""
    items = (cut.supervisions[0].alignment or {}).get("phone", [])
    spans = []
    for it in items:
        phone = fold_phone(it.symbol)
        if phone is None:
            continue
        s = min(int(round(it.start / frame_shift)), num_frames - 1)
        e = min(max(s + 1, int(round((it.start + it.duration) / frame_shift))), num_frames)
        spans.append((phone, s, e))
    return spans


def sample_cuts(cuts, per_speaker: int, seed: int) -> list:
    """Up to ``per_speaker`` utterances of every speaker, seeded."""
    by_speaker = defaultdict(list)
    for c in cuts:
        by_speaker[c.supervisions[0].speaker].append(c)
    rng = random.Random(seed)
    out = []
    for spk in sorted(by_speaker):
        group = by_speaker[spk]
        out += rng.sample(group, min(per_speaker, len(group)))
    return out


def separability(x: np.ndarray, y: list, seed: int = 0) -> dict | None:
    """5-NN accuracy (5-fold stratified CV, cosine) and silhouette (cosine) of points ``x [n, d]`` with labels ``y``.

    Classes with a single point are left out; None when fewer than two classes remain.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    counts = Counter(y)
    keep = [i for i, lab in enumerate(y) if counts[lab] >= 2]
    x, y = x[keep], [y[i] for i in keep]
    if len(set(y)) < 2:
        return None
    folds = min(5, min(Counter(y).values()))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    k = min(5, len(y) - -(-len(y) // folds))  # at most the smallest training fold: tiny sets use fewer neighbours
    knn = cross_val_score(KNeighborsClassifier(k, metric="cosine"), x, y, cv=cv).mean()
    return {"knn_accuracy": float(100 * knn), "k": k, "silhouette": float(silhouette_score(x, y, metric="cosine")),
            "points": len(y), "classes": len(set(y))}


class _Points:
    """Pooled projections of one target source: phone segments and speaker utterances."""

    def __init__(self):
        self.phones, self.phone_labels, self.speakers, self.speaker_labels = [], [], [], []

    def add(self, z: torch.Tensor, cut) -> None:
        """``z [T, N * D]`` projections of one utterance."""
        for phone, s, e in phone_spans(cut, z.shape[0]):
            self.phones.append(z[s:e].mean(0).numpy())
            self.phone_labels.append(phone)
        self.speakers.append(z.mean(0).numpy())
        self.speaker_labels.append(cut.supervisions[0].speaker)


def _top_phones(points: _Points, top: int, per_phone: int, seed: int) -> tuple[np.ndarray, list]:
    """The ``top`` most frequent phones, at most ``per_phone`` segments each (seeded): balanced classes."""
    common = [p for p, _ in Counter(points.phone_labels).most_common(top)]
    rng = random.Random(seed)
    keep = []
    for p in common:
        idx = [i for i, lab in enumerate(points.phone_labels) if lab == p]
        keep += rng.sample(idx, min(per_phone, len(idx)))
    keep.sort()
    return np.stack([points.phones[i] for i in keep]), [points.phone_labels[i] for i in keep]


def _flat(z: torch.Tensor) -> torch.Tensor:
    """``[N, T, D] -> [T, N * D]``."""
    return z.permute(1, 0, 2).reshape(z.shape[1], -1)


def mel_projections(encoder: FrozenEncoder, cuts, max_duration: float = 120.0) -> dict[str, torch.Tensor]:
    """Stage 0's view: each utterance's 4 stacked normalised log-Mel frames through the Mel quantizer, ``{id: [T, N * D]}``.

    Audio comes through the loader (mono, resampled, bad files skipped with a warning).
    """
    quantizer = encoder.checkpoint.mel_quantizer()
    out = {}
    for batch in make_loader(cuts, max_duration, shuffle=False, num_buckets=1):
        if not len(batch["cuts"]):
            continue
        feats, lens = encoder.features(batch["audio"], batch["audio_lens"])
        z = quantizer.project(stack_frames(feats, SUBSAMPLING))  # [N, B, T, D]
        for i, cut in enumerate(batch["cuts"]):
            out[cut.id] = _flat(z[:, i, : int(lens[i]) // SUBSAMPLING])
    return out


def next_stage_targets(encoder: FrozenEncoder, train_cuts, max_duration: float = 120.0) -> LatentTargets:
    """The target model a next stage would build with ``encoder``'s checkpoint as θ, statistics fitted as a refresh fits them."""
    ckpt = encoder.checkpoint
    layers, q = ckpt.target_layers(), ckpt.quantizer
    per_layer = q["num_codebooks"] // len(layers)
    latent = LatentTargets(encoder.encoder, layers, per_layer * len(layers), q["codebook_size"], q["codebook_dim"], seed=q["seed"])
    sample = seeded_subset(train_cuts, (ckpt.config.get("targets") or {}).get("stats_utterances", 64),
                           (ckpt.config.get("train") or {}).get("seed", 0))
    latent.fit_normalizers(feature_batches(sample, encoder.normalizer, max_duration, logmel=encoder.logmel))
    return latent


def collect_points(encoders: dict[str, FrozenEncoder], cuts, cache_root: str | Path, train_cuts=None, stores: dict | None = None) -> dict[str, _Points]:
    """Projections of every source, pooled per phone segment and per utterance.

    Sources: ``Mel`` (the first encoder's Mel quantizer) and ``NAME layer K`` for each
    encoder's target layers (:func:`next_stage_targets`, fitted on ``train_cuts``,
    default ``cuts``). Hidden states come from the featurizer's cache, or from ``stores[name]`` (a
    :class:`~speechrq.evaluate.probes.StateStore` that recomputes what a budget left uncached) where given.
    """
    first = next(iter(encoders.values()))
    mel = mel_projections(first, cuts)
    cuts = [c for c in cuts if c.id in mel]  # utterances whose audio loaded
    sources: dict[str, _Points] = {"Mel": _Points()}
    for c in cuts:
        sources["Mel"].add(mel[c.id], c)
    for name, enc in encoders.items():
        latent = next_stage_targets(enc, train_cuts if train_cuts is not None else cuts)
        if stores and name in stores:
            states = {c.id: a.float() for c, a in zip(cuts, stores[name].frames([c.id for c in cuts]))}
        else:
            cache = HiddenStateCache(cache_root, enc.fingerprint)
            states = {}
            for c in cuts:
                a = cache.get(c.id)
                if a is None:
                    raise KeyError(f"hidden states of {c.id} are not cached for {name}")
                states[c.id] = torch.from_numpy(a).float()
        q = enc.checkpoint.quantizer
        for layer, norm in zip(latent.layers, latent.normalizers):
            # the fair comparison: every layer projected by as many codebooks as Mel (N), not its N / K share
            quantizer = RandomProjectionQuantizer(norm.mean.shape[0], q["num_codebooks"], q["codebook_size"], q["codebook_dim"],
                                                  seed=q["seed"])
            pts = sources[f"{name} layer {layer}"] = _Points()
            for c in cuts:
                pts.add(_flat(quantizer.project(norm(states[c.id][layer + 1]))), c)
    return sources


def rank_sources(sources: dict, cuts, features, num_codebooks: int, codebook_size: int, codebook_dim: int, seed: int = RANK_SEED,
                 sigma: float = DEFAULT_SIGMA, top_phones: int = 10, per_phone: int = 150, max_duration: float = 120.0) -> dict:
    """Target sources ranked by the quality of the targets each would give, all with the same ``N`` codebooks.

    ``sources``: name -> ``(feats, lengths) -> (states [B, T, D], frame lengths)``
    (:mod:`speechrq.targets.rank`: :func:`~speechrq.targets.rank.mel_source`,
    :func:`~speechrq.targets.rank.encoder_sources`); ``features(audio, audio_lens)``
    gives the normalised log-Mel. Each source is standardised per dimension with
    statistics of its own frames and projected by ``N`` codebooks made from ``seed``
    (a source equal to another scores exactly the same). Per source: ``phones``
    (5-NN accuracy and silhouette of phone segments, when ``cuts`` have alignments),
    ``speakers`` (of utterance means) and the label-free ``agreement`` (perturbation κ,
    :func:`~speechrq.targets.rank.perturbation_agreement`); ``agreement_vs_labels``: the
    Spearman correlation over sources of the agreement with each labelled measure.
    """
    from scipy.stats import spearmanr

    from ..features import Moments
    from ..frames import lengths_to_padding_mask
    from ..targets.rank import perturbation_agreement

    batches, order = [], []
    for batch in make_loader(cuts, max_duration, shuffle=False, num_buckets=1):
        if len(batch["cuts"]):
            feats, lens = features(batch["audio"], batch["audio_lens"])
            batches.append((feats, lens))
            order.append(batch["cuts"])
    if not batches:
        raise SpeechrqError("targets rank: no utterance could be loaded")
    clean: dict[str, list] = {}
    agreement = perturbation_agreement(sources, batches, num_codebooks, codebook_size, codebook_dim, sigma, seed, clean_states=clean)
    per_utt: dict[str, list] = {name: [] for name in sources}
    moments = {name: Moments() for name in sources}
    for b, batch_cuts in enumerate(order):
        for name in sources:  # the states the agreement computed from the clean batches
            h, out_lens = clean[name][b]
            moments[name].add(h[~lengths_to_padding_mask(out_lens, h.shape[1])].float())
            per_utt[name] += [(c, h[i, : int(out_lens[i])].float()) for i, c in enumerate(batch_cuts)]
    results = {}
    for name in sources:
        mean, std = (t.float() for t in moments[name].mean_std())
        quantizer = RandomProjectionQuantizer(mean.shape[0], num_codebooks, codebook_size, codebook_dim, seed=seed)
        pts = _Points()
        for c, h in per_utt[name]:
            if len(h):
                pts.add(_flat(quantizer.project((h - mean) / std)), c)
        xs = np.stack(pts.speakers)
        results[name] = {"phones": separability(*_top_phones(pts, top_phones, per_phone, seed), seed) if pts.phone_labels else None,
                         "speakers": separability(xs, pts.speaker_labels, seed), "agreement": agreement[name]}
    names = list(results)
    correlation = {}
    for what in ("phones", "speakers"):
        scored = [n for n in names if results[n][what]]
        if len(scored) >= 3:
            rho = spearmanr([results[n]["agreement"] for n in scored], [results[n][what]["knn_accuracy"] for n in scored]).statistic
            correlation[what] = None if rho != rho else float(rho)
    return {"sources": results, "agreement_vs_labels": correlation, "num_codebooks": num_codebooks, "codebook_size": codebook_size,
            "codebook_dim": codebook_dim, "seed": seed, "sigma": sigma, "utterances": sum(map(len, order))}


def rank_checkpoint(checkpoint: str | Path, corpus: str | Path, split: str = "dev", per_speaker: int = 20, seed: int = 0,
                    num_codebooks: int | None = None, sigma: float = DEFAULT_SIGMA) -> dict:
    """:func:`rank_sources` for Mel and every layer (front end ``-1``, blocks ``0 .. L-1``) of a speechrq checkpoint,
    on up to ``per_speaker`` utterances of each speaker of ``corpus``'s ``split``; N is the checkpoint's
    ``quantizer.num_codebooks`` unless given. Raises :class:`SpeechrqError` for a Hugging Face folder."""
    from ..data.corpus import load_cuts
    from ..encoders import load_encoder
    from ..targets.rank import MEL, encoder_sources, mel_source

    encoder = load_encoder(checkpoint)
    if not hasattr(encoder, "checkpoint"):
        raise SpeechrqError(f"{checkpoint}: targets rank reads a speechrq checkpoint (its Mel quantizer and log-Mel statistics)")
    q = encoder.checkpoint.quantizer
    layers = list(range(-1, encoder.encoder.config.num_layers))
    sources = {MEL: mel_source, **encoder_sources(encoder.encoder, layers)}
    sample = sample_cuts(load_cuts(corpus, split), per_speaker, seed)
    report = rank_sources(sources, sample, encoder.features, num_codebooks or q["num_codebooks"], q["codebook_size"], q["codebook_dim"],
                          sigma=sigma)
    return {"checkpoint": str(checkpoint), "corpus": str(corpus), "split": split, **report}


def format_ranking(report: dict) -> str:
    """A markdown table of :func:`rank_sources`'s output, best phone separability first (agreement where no phones)."""
    src = report["sources"]

    def key(name):
        r = src[name]
        return -(r["phones"]["knn_accuracy"] if r["phones"] else r["agreement"])

    def knn(r):
        return f"{r['knn_accuracy']:.1f}" if r else "n/a"

    lines = [f"every source projected by {report['num_codebooks']} codebooks of {report['codebook_size']} (seed {report['seed']}), "
             f"{report['utterances']} utterances", "",
             "| source | phone 5-NN % | speaker 5-NN % | perturbation agreement κ |", "|---|---|---|---|"]
    lines += [f"| {n} | {knn(src[n]['phones'])} | {knn(src[n]['speakers'])} | {src[n]['agreement']:.3f} |" for n in sorted(src, key=key)]
    corr = report["agreement_vs_labels"]
    if corr:
        lines += ["", "Spearman correlation of the agreement with " + ", ".join(f"{w} {v:+.2f}" if v is not None else f"{w} n/a"
                                                                                for w, v in corr.items())]
    return "\n".join(lines)


def target_quality(encoders: dict[str, FrozenEncoder], cuts, cache_root: str | Path, out: str | Path, per_speaker: int = 20,
                   top_phones: int = 10, per_phone: int = 150, plot_speakers: int = 10, seed: int = 0, stores: dict | None = None,
                   figures: bool = True) -> dict:
    """Separability numbers per source, and ``target_tsne_phones.png`` / ``target_tsne_speakers.png`` in ``out``.

    Phones need alignments in the supervisions; without them ``phones`` is None and only speakers are drawn.
    ``figures=False``: the numbers only; t-SNE figures already in ``out`` (an earlier run's) are removed.
    """
    sample = sample_cuts(cuts, per_speaker, seed)
    sources = collect_points(encoders, sample, cache_root, train_cuts=cuts, stores=stores)
    results, phone_sets, speaker_sets = {}, {}, {}
    for name, pts in sources.items():
        xs, ys = np.stack(pts.speakers), pts.speaker_labels
        results[name] = {"phones": None, "speakers": separability(xs, ys, seed)}  # None: fewer than 2 speakers
        if pts.phone_labels:  # corpora without phone alignments get the speaker view only
            xp, yp = _top_phones(pts, top_phones, per_phone, seed)
            results[name]["phones"] = separability(xp, yp, seed)
            phone_sets[name] = (xp, yp)
        shown = sorted(set(ys))[:plot_speakers]
        keep = [i for i, s in enumerate(ys) if s in shown]
        speaker_sets[name] = (xs[keep], [ys[i] for i in keep])
    out = Path(out)
    if not figures:
        for name in ("target_tsne_phones.png", "target_tsne_speakers.png"):
            (out / name).unlink(missing_ok=True)
        return results
    if phone_sets:
        plot_tsne(phone_sets, {n: r["phones"] for n, r in results.items()}, "phone segments", out / "target_tsne_phones.png", seed)
    plot_tsne(speaker_sets, {n: r["speakers"] for n, r in results.items()},
              f"speakers (utterance means, {plot_speakers} shown)", out / "target_tsne_speakers.png", seed)
    return results


def plot_tsne(sets: dict[str, tuple[np.ndarray, list]], scores: dict[str, dict], what: str, path: Path, seed: int = 0) -> None:
    """One t-SNE panel per source, coloured by class, titled with its 5-NN accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from ..io import atomic_path

    fig, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 4.0), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], sets.items()):
        score = scores.get(name)
        ax.set_title(f"{name}\n5-NN acc " + (f"{score['knn_accuracy']:.1f}%" if score else "n/a"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(y) < 5:
            ax.text(0.5, 0.5, "too few points", ha="center", transform=ax.transAxes)
            continue
        xy = TSNE(2, perplexity=min(30.0, (len(y) - 1) / 3), init="pca", random_state=seed).fit_transform(x)
        classes = sorted(set(y))
        colors = matplotlib.colormaps["tab20"].resampled(max(len(classes), 2))
        for k, cls in enumerate(classes):
            sel = np.array([lab == cls for lab in y])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=colors(k), label=cls)
    axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"t-SNE of target random projections: {what}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)

"""The three ``speechrq units`` jobs: fit a quantizer, encode corpora, report on a grid of quantizers.

Each is resumable: the feature sample resumes after its last shard, a fitted
quantizer with the same settings is reused, encoding skips utterances already
written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json, atomic_write_text, read_json
from .quantizers import META_FILE, QuantizerSpec, UnitQuantizer

log = logging.getLogger(__name__)


PATHS = ("encoder", "corpus")  # recorded for the reader, never compared: the fingerprints beside them are


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def open_layer(encoder: str | Path, layer: int, frame_ms: int | None = None, device=None):
    """The frozen layer, on ``device`` (default: the GPU when there is one), at ``frame_ms`` (default: the source's own
    frame shift)."""
    from ..encoders import EncoderLayer

    return EncoderLayer(encoder, layer, frame_ms).to(device or _device())


def recorded_frame_ms(source: dict) -> int:
    """The frame shift a quantizer's units come at (``units.json``'s ``source``; 40 ms where older ones say nothing:
    they were all made on the 40 ms grid)."""
    return int(source.get("frame_ms", 40))


def fit_units(encoder: str | Path, layer: int, corpus: str | Path, out: str | Path, spec: QuantizerSpec, frames: int | None = None,
              fraction: float | None = None, split: str | None = None, max_duration: float = 30.0, progress: bool = True,
              frame_ms: int | None = None, ctx=None) -> UnitQuantizer | None:
    """Sample ``layer`` of ``encoder`` over ``corpus``'s ``split`` into ``OUT/sample``, fit ``spec`` on it, save to ``OUT``.

    ``split`` None: the corpus's training split (:func:`~speechrq.data.corpus.default_split`: ``train``, else its only
    ``train*`` split).

    ``frame_ms``: the units' frame shift (default: the source's own, 20 ms for a Hugging Face model; see
    :class:`~speechrq.encoders.EncoderLayer`); recorded in ``units.json``, and every later step (encoding, ASR,
    transcription) reads the encoder at that shift. ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun
    the ranks share the sample's pass (:func:`~speechrq.units.sample.sample_features`) and rank 0 fits and returns
    the quantizer (None on the other ranks)."""
    from .. import distributed

    ctx = ctx or distributed.Context()
    from ..data.corpus import LazyCuts
    from .sample import load_sample, sample_features

    from dataclasses import asdict

    from ..identity import corpus_fingerprint, describe_difference, versions

    spec.validate()
    from ..data.corpus import default_split

    split = split or default_split(corpus, "train")  # the default follows the corpus (train-clean-100, ...)
    out = Path(out)
    lay = open_layer(encoder, layer, frame_ms, ctx.device if ctx.distributed else None)
    # what determines the fit: the encoder's weights, layer and frame shift, the corpus's content, the sample size, the spec, faiss
    source = {"encoder": str(Path(encoder).resolve()), "fingerprint": lay.fingerprint, "layer": layer, "dim": lay.dim,
              "corpus": str(Path(corpus).resolve()),  # paths for the reader: absolute, so they say the same from anywhere
              "split": split, "corpus_fingerprint": corpus_fingerprint(corpus, split), "frames": frames, "fraction": fraction,
              "versions": versions("faiss"), "frame_ms": lay.frame_ms}
    def fitted() -> bool:
        if not (out / META_FILE).exists():
            if (held := [n for n in ("identity.json", "results.json", "encode.json") if (out / n).exists()]):
                raise SpeechrqError(f"{out}: holds another command's output ({', '.join(held)}), not a quantizer; use another --out")
            return False
        q = UnitQuantizer.load(out)
        # paths are not compared (the same encoder or corpus named from another directory is the same input): their
        # content is, by the fingerprints
        old = {"spec": asdict(q.spec), **{k: q.source.get(k) for k in source if k not in PATHS}, "frame_ms": recorded_frame_ms(q.source)}
        new = {"spec": asdict(spec), **{k: v for k, v in source.items() if k not in PATHS}}
        if old == new:
            log.info("%s: already fitted with these settings; reused", out)
            return True
        raise SpeechrqError(f"{out}: holds a quantizer fitted with other settings ({describe_difference(old, new)}); "
                            "use another directory or delete this one")

    if distributed.on_main(fitted, ctx):
        return UnitQuantizer.load(out) if ctx.is_main else None
    state = sample_features(lay, LazyCuts(corpus, split), out / "sample", seed=spec.seed, frames=frames, fraction=fraction,
                            max_duration=max_duration, progress=progress, corpus_fingerprint=source["corpus_fingerprint"], ctx=ctx)
    if not ctx.is_main:
        return None
    x = load_sample(out / "sample")
    q = UnitQuantizer.fit(x, spec, source | {"sample_frames": len(x), "corpus_frames": state["corpus_frames"]}, progress=progress)
    q.save(out)
    return q


def format_fit(q: UnitQuantizer) -> str:
    """One line: what was fit on how many points, faiss's subsampling named."""
    s, src = q.spec, q.source
    note = (f" (faiss subsampled the sample to max_points_per_centroid x k = {s.max_points_per_centroid * s.k})"
            if src.get("sample_frames", 0) > min(q.trained_points) else "")
    return (f"{s.kind}, M = {q.num_streams}, k = {s.k}, layer {src['layer']} of {src['encoder']} at {recorded_frame_ms(src)} ms: sample of "
            f"{src.get('sample_frames')} frames of {src.get('corpus_frames')}; each codebook trained on {min(q.trained_points)} points{note}\n")


def encode_units(quantizer_dir: str | Path, corpus: str | Path, splits: list[str] | None, out: str | Path, bpe: int | None = None,
                 max_duration: float = 30.0, progress: bool = True, ctx=None, compile: bool = False) -> dict:
    """Encode ``splits`` of ``corpus`` (None or empty: every split it has) with a fitted quantizer into ``OUT`` (manifests,
    arrays, Kaldi text; BPE on request).

    ``OUT`` keeps a copy of the quantizer (``OUT/quantizer``, what :class:`~speechrq.asr.data.UnitSource` reads), so the
    units stay usable when the quantizer's folder moves. Splits encoded by earlier calls stay; the unit BPE (``bpe``, or
    the size an earlier call asked for) is always trained and applied over every split ``OUT`` holds, so no split keeps
    texts of another BPE model.

    ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun the ranks share each split's pass
    (:func:`~speechrq.units.encode.encode_corpus`) and rank 0 checks, merges and returns the summary ({} on the others).
    ``compile``: a speechrq encoder's blocks through ``torch.compile`` (:func:`~speechrq.encoders.compile_frozen`); its
    units are kept apart from eager ones (``compiled`` in the identity). The filterbank and Hugging Face models stay eager.
    """
    from .. import distributed

    ctx = ctx or distributed.Context()
    import shutil
    from dataclasses import asdict

    from ..data.corpus import LazyCuts, cut_files
    from ..identity import claim, corpus_fingerprint, versions
    from ..io import file_fingerprint
    from .encode import UNITS_FIELD, encode_corpus
    from .quantizers import WEIGHTS_FILE

    splits = list(splits or cut_files(corpus))  # the default follows the corpus: every split it has, whatever their names
    q = UnitQuantizer.load(quantizer_dir)
    lay = open_layer(q.source["encoder"], int(q.source["layer"]), recorded_frame_ms(q.source), ctx.device if ctx.distributed else None)
    out = Path(out)
    # units already in OUT are kept only if the same quantizer made them from the same corpus (arrays are skipped by id)
    identity = {"code": "units-encode/1", "quantizer": file_fingerprint(Path(quantizer_dir) / WEIGHTS_FILE), "spec": asdict(q.spec),
                "encoder": lay.fingerprint, "layer": int(q.source["layer"]), "corpus": corpus_fingerprint(corpus),
                "versions": versions("torch", "faiss"), "frame_ms": lay.frame_ms, "compiled": False}
    if compile:
        from ..encoders import compile_frozen

        identity["compiled"] = compile_frozen(lay.source, (ctx.device if ctx.distributed else _device()).type)
        if ctx.is_main:
            print(f"--compile: the encoder blocks of {lay.path} compiled" if identity["compiled"] else
                  f"--compile: {lay.path} is not a speechrq checkpoint (the filterbank or a Hugging Face model): it stays eager")

    def prepare() -> tuple[bool, dict, int | None]:
        """Whether OUT already holds all that is asked, its summary and unit BPE size, after every check: rank 0's alone,
        so a refusal is one line."""
        if lay.fingerprint != q.source["fingerprint"]:
            raise SpeechrqError(f"{quantizer_dir}: was fitted on encoder {q.source['fingerprint']}, but {q.source['encoder']} is now "
                                f"{lay.fingerprint}: the weights changed; fit again")
        from ..data.batching import refuse_short_cuts

        for split in splits:  # every split checked before OUT is claimed or any is encoded: a refusal leaves nothing
            refuse_short_cuts(LazyCuts(corpus, split), lay.min_samples, f"encoder layer {lay.layer} (split {split})")
        reused = claim(out, identity, "units", hint="use another --out or delete it", defaults={"frame_ms": 40, "compiled": False})
        done = read_json(out / "encode.json") if reused and (out / "encode.json").exists() else {}
        earlier_bpe = (done.get("bpe") or {}).get("requested_vocab_size")
        if done and set(splits) <= set(done["splits"]) and bpe in (None, earlier_bpe):
            log.info("%s: these splits are already encoded with this quantizer; reused", out)
            return True, done, earlier_bpe
        if not (out / "quantizer" / WEIGHTS_FILE).exists():  # its two files (the folder may hold the sample, or OUT itself)
            (out / "quantizer").mkdir(parents=True, exist_ok=True)
            for name in (META_FILE, WEIGHTS_FILE):
                with atomic_path(out / "quantizer" / name) as tmp:
                    shutil.copyfile(Path(quantizer_dir) / name, tmp)
        return False, done, earlier_bpe

    reused, done, earlier_bpe = distributed.on_main(prepare, ctx)
    if reused:
        return done if ctx.is_main else {}
    summary = {"quantizer": str(Path(quantizer_dir).resolve()), "identity": identity,
               "splits": dict(done.get("splits", {}))}  # splits encoded by earlier calls stay listed
    for split in splits:
        summary["splits"][split] = encode_corpus(lay, q, LazyCuts(corpus, split), out, split, max_duration, progress, ctx=ctx)
    if not ctx.is_main:
        return {}
    if (vocab := bpe or earlier_bpe):
        if earlier_bpe and vocab != earlier_bpe:
            log.warning("%s: unit BPE %d replaces the earlier %d on every split (%s)", out, vocab, earlier_bpe, ", ".join(summary["splits"]))
        held = sorted(summary["splits"], key=lambda s: s != "train")  # trained on train where OUT has it
        summary["bpe"] = unit_bpe(out, held, vocab, q.num_streams, UNITS_FIELD)
    atomic_write_json(out / "encode.json", summary)
    return summary


def unit_bpe(out: Path, splits: list[str], vocab_size: int, streams: int, field: str) -> dict:
    """De-duplicated single-stream units -> sentencepiece BPE trained on the first split; texts and length reduction per split."""
    from ..data.corpus import text_id
    from .bpe import deduplicate, encode_bpe, load_bpe, train_bpe, units_to_text
    from .encode import load_units, manifest_path

    if streams != 1:
        raise SpeechrqError(f"--bpe: BPE is for single-stream units (k-means); this quantizer has {streams} streams")
    units = {s: {c.id: c.load_custom(field)[:, 0] for c in load_units(manifest_path(out, s))} for s in splits}
    dedup = {s: {i: deduplicate(u) for i, u in us.items()} for s, us in units.items()}
    model = train_bpe([units_to_text(u) for u in dedup[splits[0]].values()], vocab_size, out / "bpe.model")
    sp = load_bpe(model)
    # sentencepiece may make fewer pieces than asked (warned in train_sentencepiece): record the vocabulary actually used
    lengths = {"vocab_size": sp.get_piece_size(), "requested_vocab_size": vocab_size, "trained_on": splits[0], "splits": {}}
    for s in splits:
        tokens = {i: encode_bpe(sp, u) for i, u in dedup[s].items()}
        atomic_write_text(out / f"units_{s}.bpe.txt", "".join(f"{text_id(i, out / f'units_{s}.bpe.txt')} {' '.join(map(str, t))}\n"
                                                              for i, t in tokens.items()))
        raw = sum(len(u) for u in units[s].values())
        dd = sum(len(u) for u in dedup[s].values())
        bp = sum(len(t) for t in tokens.values())
        lengths["splits"][s] = {"frames": raw, "deduplicated": dd, "bpe": bp, "dedup_reduction": 1 - dd / raw, "bpe_reduction": 1 - bp / raw}
    return lengths


def format_lengths(lengths: dict) -> str:
    asked = lengths.get("requested_vocab_size", lengths["vocab_size"])
    note = f", {asked} asked for: the training units support no more" if asked != lengths["vocab_size"] else ""
    lines = [f"unit sequence lengths (BPE {lengths['vocab_size']}{note}, trained on {lengths['trained_on']}):", "",
             "| split | frames | de-duplicated | BPE | reduction (dedup) | reduction (dedup + BPE) |", "|---|---|---|---|---|---|"]
    for s, r in lengths["splits"].items():
        lines.append(f"| {s} | {r['frames']} | {r['deduplicated']} | {r['bpe']} | {100 * r['dedup_reduction']:.1f}% | "
                     f"{100 * r['bpe_reduction']:.1f}% |")
    return "\n".join(lines) + "\n"


def held_out_frames(lay, cuts, max_frames: int, max_duration: float = 30.0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of ``cuts`` (in manifest order, up to ``max_frames``) and its phone label ('' where none)."""
    from tqdm import tqdm

    from ..data.batching import refuse_short_cuts, sequential_batches
    from .report import frame_phones

    refuse_short_cuts(cuts, lay.min_samples, f"encoder layer {lay.layer}")

    xs, ys, n = [], [], 0
    device = next(iter([*lay.parameters(), *lay.buffers()])).device
    for batch in tqdm(sequential_batches(cuts, max_duration, lay.min_samples), desc="held-out frames", unit="batch", disable=not progress):
        states, lens = lay(batch["audio"].to(device), batch["audio_lens"].to(device))
        for i, cut in enumerate(batch["cuts"]):
            t = int(lens[i])
            xs.append(states[i, :t].float().cpu().numpy())
            ys.append(frame_phones(cut, t, lay.frame_shift))
            n += t
        if n >= max_frames:
            break
    if n < max_frames:  # recorded as the report's eval_frames
        log.warning("held-out frames: %d asked for, the split holds %d; measuring on all of them", max_frames, n)
    return np.concatenate(xs)[:max_frames], np.concatenate(ys)[:max_frames]


def report_units(encoder: str | Path, layer: int, corpus: str | Path, out: str | Path, k: int, points: list, frames: int,
                 eval_split: str | None = None, eval_frames: int = 20000, seed: int = 0, niter: int = 20, normalize: str = "none",
                 train_split: str | None = None, progress: bool = True, frame_ms: int | None = None) -> dict:
    """Sample ``frames`` training frames, take ``eval_frames`` of ``eval_split``, fit and measure every point: ``OUT/report.{json,md,png}``."""
    from ..data.corpus import LazyCuts
    from ..identity import corpus_fingerprint, describe_difference, versions
    from .report import fit_and_measure, format_report, plot_report
    from .sample import load_sample, sample_features

    from ..data.corpus import default_split

    # the defaults follow the corpus: its train and dev splits, whatever it calls them (train-clean-100, dev-clean, ...)
    train_split, eval_split = train_split or default_split(corpus, "train"), eval_split or default_split(corpus, "dev")
    out = Path(out)
    lay = open_layer(encoder, layer, frame_ms)
    corpus_fp = corpus_fingerprint(corpus)
    sample_features(lay, LazyCuts(corpus, train_split), out / "sample", seed=seed, frames=frames, progress=progress,
                    corpus_fingerprint=corpus_fingerprint(corpus, train_split))
    train = load_sample(out / "sample")
    held, phones = held_out_frames(lay, LazyCuts(corpus, eval_split), eval_frames, progress=progress)
    settings = {"encoder": str(Path(encoder).resolve()), "fingerprint": lay.fingerprint, "layer": layer, "corpus": str(Path(corpus).resolve()),
                "corpus_fingerprint": corpus_fp, "k": k, "train_frames": len(train), "eval_split": eval_split, "eval_frames": len(held),
                "seed": seed, "niter": niter, "normalize": normalize, "versions": versions("faiss"), "frame_ms": lay.frame_ms}
    path = out / "report.json"
    from ..schema import load
    from ..formats import units_report

    report = load(path, units_report) if path.exists() else {"settings": settings, "rows": []}  # checked: one line naming a bad key
    old = {"frame_ms": 40} | {k: v for k, v in (report.get("settings") or {}).items() if k not in PATHS}  # older: all 40 ms
    if (why := describe_difference(old, {k: v for k, v in settings.items() if k not in PATHS})):
        # rows of other settings are never mixed in, nor silently replaced
        raise SpeechrqError(f"{path}: a report made with other settings ({why}); use another --out or delete it")
    report["settings"] = settings
    done = {(r["kind"], r["M"], r["alpha"] if r["alpha"] is not None else 1.0) for r in report["rows"]}
    labels = phones if (phones != "").any() else None
    from tqdm import tqdm

    for point in tqdm(points, desc="units report", unit="quantizer", disable=not progress):
        if tuple(point) in done:
            continue
        report["rows"].append(fit_and_measure(train, held, labels, k, point, seed, niter, normalize))
        atomic_write_json(path, report)  # an interrupted report keeps every finished quantizer
    order = {tuple(p): i for i, p in enumerate(points)}
    key = lambda r: (r["kind"], r["M"], r["alpha"] if r["alpha"] is not None else 1.0)  # noqa: E731
    # report.json keeps every finished point (a cache); the table and figure show the points asked for, in their order
    asked = sorted((r for r in report["rows"] if key(r) in order), key=lambda r: order[key(r)])
    atomic_write_text(out / "report.md", format_report(asked))
    plot_report(asked, out / "report.png")
    return {**report, "rows": asked}

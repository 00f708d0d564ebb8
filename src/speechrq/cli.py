"""``speechrq``: one command, a sub-command per job, ``--help`` everywhere.

Heavy imports (torch, lhotse) happen inside the sub-commands, so ``--help`` and
argument errors answer at once. User mistakes surface as one line,
``speechrq: error: ...``, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import OtherRankFailed, SpeechrqError, Terminated, install_termination_handlers


# The shortest audio each encoder kind reads, quoted by the help of every command that reads audio at inference.
# Defined by speechrq.encoders.frozen.MIN_SAMPLES and speechrq.encoders.hf.hf_min_samples (not imported here: --help
# stays free of torch); tests/test_cli.py checks that these numbers are theirs.
MIN_AUDIO_HELP = ("Audio shorter than the encoder reads is refused in one line naming each file (nothing is dropped or "
                  "transcribed as empty): at least 560 samples (35 ms at 16 kHz) for a speechrq checkpoint, 720 samples (45 ms) "
                  "for a standard Hugging Face wav2vec2/HuBERT/WavLM/data2vec-audio front end.")


def _holds(output, what: str):
    """Run the command holding its output (``output(args)``: a folder or file, None for none) for its whole lifetime:
    a second process writing the same output is refused in one line (:func:`speechrq.lock.hold`)."""
    import functools

    def wrap(cmd):
        @functools.wraps(cmd)
        def run(args):
            path = output(args)
            if path is None:
                return cmd(args)
            from .lock import hold

            with hold(path, what):
                return cmd(args)
        return run
    return wrap


def _stats_file(args) -> str:
    return args.out or str(Path(args.corpus_dir) / "feature_stats.json")


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------- synth


@_holds(lambda a: a.out_dir, "a corpus")
def cmd_synth(args) -> None:
    from .data.corpus import format_summary
    from .data.synth import COMMAND_SHARE, SynthConfig, synthesize_corpus

    languages = ""
    if args.languages is not None:  # one spelling of a list: "en, FR" is "en,fr" (a corpus made with either is reused)
        languages = ",".join(c.strip().lower() for c in args.languages.split(","))
        if not languages.strip(","):
            raise SpeechrqError("--languages: give at least one language id (e.g. en,fr,cmn), or leave the flag out for the English corpus")
    share = args.command_share if args.command_share is not None else 0.0 if languages else COMMAND_SHARE
    config = SynthConfig(hours=args.hours, speakers=args.speakers, seed=args.seed, command_share=share,
                         rate_jitter=args.rate_jitter, pitch_jitter=args.pitch_jitter, snr_db=args.snr, languages=languages)
    config.validate()
    out = Path(args.out_dir)
    complete = (out / "summary.json").exists()
    summary = synthesize_corpus(out, config, workers=args.workers, progress=not args.quiet)
    if complete:
        print(f"{out}: corpus already complete, reusing it")
    print(format_summary(summary, title=f"corpus {out} (seed {args.seed})"))


# --------------------------------------------------------------------------- data


@_holds(lambda a: a.out, "an imported corpus")
def cmd_data_import(args) -> None:
    from .data.corpus import format_summary
    from .data.recipes import import_corpus

    summary, report = import_corpus(args.kind, args.src, args.out, workers=args.workers, progress=not args.quiet,
                                    allow_overlap=args.allow_overlap)
    print(format_summary(summary, title=f"{args.kind} corpus {args.out}"))
    print(report.format())
    empty = summary.get("empty_transcripts") or {}
    if empty.get("count"):
        n = empty["count"]
        print(f"warning: {n} transcript{' is' if n == 1 else 's are'} empty once normalised (e.g. {', '.join(empty['examples'])}); kept in the "
              f"corpus, all listed under empty_transcripts in {Path(args.out) / 'import_report.json'}", file=sys.stderr)
    if (n := (summary.get("overlap") or {}).get("count")):
        first = summary["overlap"]["examples"][0]
        print(f"warning: {n} recording{' is' if n == 1 else 's are'} in a held-out split and a training (or another held-out) split "
              f"(e.g. {first['held_out']} = {first['other']}), imported as --allow-overlap asks; all listed under overlap in "
              f"{Path(args.out) / 'import_report.json'}", file=sys.stderr)


def cmd_data_summary(args) -> None:
    from .data.corpus import format_summary, summarize

    print(format_summary(summarize(args.corpus_dir), title=f"corpus {args.corpus_dir}"))


# --------------------------------------------------------------------------- features


@_holds(_stats_file, "feature statistics")
def cmd_features_stats(args) -> None:
    from .data.corpus import load_cuts
    from .features import STATS_FILE, FeatureStats, check_stats_source, compute_stats
    from .identity import corpus_fingerprint

    from .data.corpus import default_split

    out = Path(args.out) if args.out else Path(args.corpus_dir) / STATS_FILE
    args.split = args.split or default_split(args.corpus_dir, "train")  # the corpus's own training split
    source = {"corpus": corpus_fingerprint(args.corpus_dir, args.split), "split": args.split, "seed": args.seed,
              "max_utterances": args.max_utterances}
    from . import distributed

    def existing():
        if out.exists() and not args.force:
            stats = FeatureStats.load(out)
            check_stats_source(out, stats, source)  # reused only if made from this corpus's content with these settings
            return stats
        load_cuts(args.corpus_dir, args.split)  # the split is checked before any work
        return None

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (the sample's batches are shared)
        if (stats := distributed.on_main(existing, ctx)) is not None:
            if ctx.is_main:
                print(f"{out}: exists ({stats.utterances} utterances, {stats.frames} frames), reusing it (--force to recompute)")
            return
        stats = compute_stats(load_cuts(args.corpus_dir, args.split), max_utterances=args.max_utterances, seed=args.seed,
                              progress=not args.quiet, ctx=ctx)
    if ctx.is_main:
        stats.source = source
        stats.save(out)
        print(f"{out}: global log-Mel mean/std from {stats.utterances} utterances, {stats.frames} frames")


# --------------------------------------------------------------------------- pretrain


def cmd_pretrain(args) -> None:
    from .config import load_config
    from .pretrain.config import PretrainConfig
    from .pretrain.trainer import train

    from . import distributed

    overrides = list(args.set or [])
    if args.init_from:
        overrides.append(f"targets.init_from={args.init_from}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    from .lock import hold

    try:
        with hold(cfg.out_dir, "a pre-training run"):
            last = train(cfg, resume=args.resume, progress=not args.quiet)
    finally:
        distributed.shutdown()
    if int(os.environ.get("RANK", "0")) == 0:
        from .pretrain.meters import format_run_summary

        print(format_run_summary(cfg))
        print(f"{cfg.out_dir}: trained to step {cfg.optim.max_steps}; last checkpoint {last}")


@_holds(lambda a: a.out, "an exported checkpoint")
def cmd_export(args) -> None:
    from .checkpoint import MODEL_FILE, export_checkpoint
    from .io import file_sha256

    out = export_checkpoint(args.checkpoint, args.out)
    size = (out / MODEL_FILE).stat().st_size
    print(f"{out}: {MODEL_FILE} {size / 1e6:.1f} MB, sha256 {file_sha256(out / MODEL_FILE)} (no heads, no trainer state)")


@_holds(lambda a: a.out, "a target ranking")
def cmd_targets_rank(args) -> None:
    from .evaluate.target_quality import format_ranking, rank_checkpoint
    from .io import atomic_write_json

    if args.per_speaker < 2:
        raise SpeechrqError(f"--per-speaker: at least 2 utterances per speaker, got {args.per_speaker}")
    if args.sigma <= 0:
        raise SpeechrqError(f"--sigma: must be > 0, got {args.sigma}")
    from .data.corpus import default_split

    report = rank_checkpoint(args.checkpoint, args.corpus, args.split or default_split(args.corpus, "dev"), args.per_speaker, num_codebooks=args.num_codebooks, sigma=args.sigma)
    print(format_ranking(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"{args.out}: written")


@_holds(lambda a: a.out or str(Path(a.demo) / "report.md"), "the report")
def cmd_report(args) -> None:
    from .io import atomic_write_text
    from .studies.report import demo_report

    if not Path(args.demo).is_dir():
        raise SpeechrqError(f"{args.demo}: not a directory (the demo's output folder, e.g. exp/demo)")
    out = Path(args.out) if args.out else Path(args.demo) / "report.md"
    text = demo_report(args.demo, args.docs)
    atomic_write_text(out, text)
    print(text, end="")
    print(f"{out}: written")


def cmd_bench_pretrain(args) -> None:
    import json

    from .pretrain.bench import bench_pretrain, format_bench

    result = bench_pretrain(args.preset, steps=args.steps, warmup=args.warmup, batch_seconds=args.batch_seconds,
                            device=args.device, precision=args.precision, num_codebooks=args.num_codebooks,
                            codebook_size=args.codebook_size, latent=args.latent,
                            layers=[int(x) for x in args.layers.split(",")] if args.layers else None)
    print(json.dumps(result, indent=1) if args.json else format_bench(result))


@_holds(lambda a: a.out, "a quality benchmark")
def cmd_bench_quality(args) -> None:
    from .evaluate.finetune import FinetuneConfig
    from .studies.quality import format_quality, quality_benchmark

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or any(t not in ("pr", "ft") for t in tasks):
        raise SpeechrqError(f"--tasks: {args.tasks!r}: give pr and/or ft")
    if args.probe_seeds < 2:
        raise SpeechrqError(f"--probe-seeds: at least 2 to measure probe noise, got {args.probe_seeds}")
    report = quality_benchmark(args.config, args.corpus, args.out, args.steps, args.every, tasks, seeds=args.probe_seeds,
                               demo_step=args.demo_step, overrides=args.set or [], progress=not args.quiet,
                               finetune=FinetuneConfig(steps=args.ft_steps), epochs=args.epochs)
    print(format_quality(report), end="")
    print(f"{args.out}: quality.json, quality.png")


def int_list(text: str, flag: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; anything else is a one-line error naming ``flag``."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of integers") from None


@_holds(lambda a: a.out, "a Latent-RQ study")
def cmd_bench_latent(args) -> None:
    from .studies.latent_study import latent_study

    seeds, best, middle = (int_list(args.seeds, "--seeds"), int_list(args.best_layers, "--best-layers"),
                           int_list(args.middle_layers, "--middle-layers"))
    if min(args.probe_seeds, args.ft_probe_seeds, args.curve_probe_seeds, args.epochs, args.ft_steps) < 1:
        raise SpeechrqError("--probe-seeds, --ft-probe-seeds, --curve-probe-seeds, --epochs, --ft-steps: each must be >= 1")
    if len(seeds) < 2:
        raise SpeechrqError(f"--seeds: at least 2 pre-training seeds to measure their spread, got {args.seeds!r}")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or any(t not in ("pr", "ft", "sid", "er", "ic") for t in tasks):
        raise SpeechrqError(f"--tasks: {args.tasks!r}: give some of pr, ft, sid, er, ic")
    report = latent_study(args.config, args.latent_config, args.corpus, args.out, seeds, args.steps, best, tasks, args.probe_seeds,
                          args.reference, int_list(args.reference_layers, "--reference-layers") if args.reference_layers else None,
                          args.reference_set or [], progress=not args.quiet,
                          ft_arms=None if args.ft_arms is None else [a.strip() for a in args.ft_arms.split(";")], epochs=args.epochs,
                          ft_steps=args.ft_steps, middle_layers=middle, ft_probe_seeds=args.ft_probe_seeds,
                          curve_probe_seeds=args.curve_probe_seeds,
                          only_arms=None if args.arms is None else [a.strip() for a in args.arms.split(";") if a.strip()],
                          reference_steps=args.reference_steps)
    from .studies.latent_study import format_study

    print(format_study(report), end="")
    print(f"{args.out}: study.json, study.md")


@_holds(lambda a: a.out, "a recipe sweep")
def cmd_bench_sweep(args) -> None:
    from .studies.sweep import format_sweep, recipe_sweep

    if args.probe_seeds < 2:
        raise SpeechrqError(f"--probe-seeds: at least 2 to measure probe noise, got {args.probe_seeds}")
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    report = recipe_sweep(args.sweep, args.corpus, args.out, seeds=args.probe_seeds, epochs=args.epochs, only=only,
                          progress=not args.quiet)
    print(format_sweep(report), end="")
    print(f"{args.out}: sweep.json, sweep.md")


# --------------------------------------------------------------------------- units


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of integers") from None


def _float_list(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _sample_size(args) -> tuple[int | None, float | None]:
    """--frames N or --fraction P (exactly one), checked."""
    if (args.frames is None) == (args.fraction is None):
        raise SpeechrqError("--frames / --fraction: give exactly one (a number of frames, or a share of the corpus's frames)")
    if args.frames is not None and args.frames < 1:
        raise SpeechrqError(f"--frames: must be >= 1, got {args.frames}")
    if args.fraction is not None and not 0 < args.fraction <= 1:
        raise SpeechrqError(f"--fraction: must be in (0, 1], got {args.fraction}")
    return args.frames, args.fraction


@_holds(lambda a: a.out, "units")
def cmd_units_fit(args) -> None:
    from .units import QuantizerSpec
    from .units.run import fit_units, format_fit

    frames, fraction = _sample_size(args)
    if args.kind == "kmeans" and args.M not in (None, 1):
        raise SpeechrqError(f"--M {args.M}: k-means has one stream; --M sets the streams of rvq, pq and rpq")
    spec = QuantizerSpec(kind=args.kind, k=args.k, num_subspaces=1 if args.kind == "kmeans" else (args.M or 8), alpha=args.alpha,
                         seed=args.seed, niter=args.niter, max_points_per_centroid=args.max_points_per_centroid, normalize=args.normalize)
    from . import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (the sample's pass is shared)
        q = fit_units(args.encoder, args.layer, args.corpus, args.out, spec, frames=frames, fraction=fraction, split=args.split,
                      max_duration=args.max_duration, progress=not args.quiet, frame_ms=args.frame_ms, ctx=ctx)
    if q is None:  # not rank 0
        return
    print(format_fit(q), end="")
    print(f"{args.out}: units.json, units.safetensors")


@_holds(lambda a: a.out, "an encoded corpus")
def cmd_units_encode(args) -> None:
    from .units.run import encode_units, format_lengths

    if args.bpe is not None and args.bpe < 2:
        raise SpeechrqError(f"--bpe: a vocabulary size >= 2, got {args.bpe}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits is not None else None  # None: every split
    if splits == []:
        raise SpeechrqError(f"--splits {args.splits!r}: names no split (leave it out for every split of the corpus)")
    from . import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (each split's pass is shared)
        summary = encode_units(args.quantizer, args.corpus, splits, args.out, bpe=args.bpe, max_duration=args.max_duration,
                               progress=not args.quiet, ctx=ctx)
    if not summary:  # not rank 0
        return
    for s in summary["splits"].values():
        per = f" per process, {s['processes']} processes" if s.get("processes", 1) > 1 else ""
        rate = f"; encoded {s['encoded_frames']} frames at {s['frames_per_s']:.0f} frames/s{per}" if s["frames_per_s"] else ""
        print(f"{s['manifest']}: {s['utterances']} utterances{rate}")
    if "bpe" in summary:
        print(format_lengths(summary["bpe"]), end="")
    print(f"{args.out}: encode.json")


@_holds(lambda a: a.out, "a units report")
def cmd_units_report(args) -> None:
    from .units.report import format_report, grid
    from .units.run import report_units

    frames, fraction = _sample_size(args)
    if fraction is not None:
        raise SpeechrqError("--fraction: the report takes --frames (a fixed training sample)")
    ms = _int_list(args.M, "--M")
    if not ms or min(ms) < 1:
        raise SpeechrqError(f"--M: {args.M!r}: positive integers")
    alphas = _float_list(args.alphas, "--alphas")
    if not alphas or not all(0 < a <= 1 for a in alphas):
        raise SpeechrqError(f"--alphas: {args.alphas!r}: numbers in (0, 1]")
    points = grid([x.strip() for x in args.kinds.split(",") if x.strip()], ms, alphas)
    report = report_units(args.encoder, args.layer, args.corpus, args.out, args.k, points, frames, eval_split=args.eval_split,
                          eval_frames=args.eval_frames, seed=args.seed, niter=args.niter, normalize=args.normalize,
                          train_split=args.split, progress=not args.quiet, frame_ms=args.frame_ms)
    print(format_report(report["rows"]), end="")
    print(f"{args.out}: report.json, report.md, report.png")


# --------------------------------------------------------------------------- asr


def cmd_asr_train(args) -> None:
    from . import distributed
    from .asr.config import ASRConfig
    from .asr.trainer import train_asr
    from .config import load_config

    cfg = load_config(ASRConfig, args.config, list(args.set or []))
    from .lock import hold

    try:
        with hold(cfg.out_dir, "an ASR training run"):
            last = train_asr(cfg, resume=args.resume, progress=not args.quiet)
    finally:
        distributed.shutdown()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{cfg.out_dir}: trained to step {cfg.optim.max_steps}; last checkpoint {last}")


def _decode_args(args) -> tuple[str, int, float]:
    if args.beam < 1:
        raise SpeechrqError(f"--beam: must be >= 1, got {args.beam}")
    if not 0 <= args.ctc_weight <= 1:
        raise SpeechrqError(f"--ctc-weight: must be in [0, 1], got {args.ctc_weight}")
    return args.mode, args.beam, args.ctc_weight


def cmd_asr_decode(args) -> None:
    from . import distributed

    mode, beam, w = _decode_args(args)
    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (each split's batches are shared)
        _asr_decode(args, mode, beam, w, ctx)


def _asr_decode(args, mode: str, beam: int, w: float, ctx) -> None:
    from .asr.data import UnitSource
    from .asr.decode import Recognizer

    rec = Recognizer(args.checkpoint, device=str(ctx.device) if ctx.distributed else None)
    source = UnitSource(args.units or rec.spec["units_dir"])
    from .io import file_fingerprint
    from .units.quantizers import WEIGHTS_FILE

    if file_fingerprint(source.quantizer_dir / WEIGHTS_FILE) != rec.quantizer_fingerprint():
        raise SpeechrqError(f"{source.dir}: its units come from {source.quantizer_dir}, not from the quantizer the model was trained "
                            f"on ({rec.spec['quantizer_dir']})")
    # the default folder names everything that changes the hypotheses: a decode with other settings never replaces one
    units_tag = "" if not args.units else f"_units{source.fingerprint[:8]}"
    out = Path(args.out) if args.out else rec.path.parent.parent / "decode" / f"{rec.path.name}_{mode}_beam{beam}_ctc{w:g}{units_tag}"
    from .lock import hold

    with hold(out, "decodes"):
        _decode_into(args, rec, source, out, mode, beam, w, ctx)


def _decode_into(args, rec, source, out: Path, mode: str, beam: int, w: float, ctx) -> None:
    from .asr.decode import decode_split
    from .data.corpus import text_id
    from .io import atomic_write_json, atomic_write_text, file_fingerprint

    # splits decoded earlier into OUT with the same model, units and settings are kept beside the new ones; OUT holding
    # decodes of anything else is refused, never mixed
    from .checkpoint import MODEL_FILE
    from .identity import describe_difference
    from .io import read_json

    from .asr.search import SEARCH_VERSION

    made = {"model": file_fingerprint(rec.path / MODEL_FILE), "units_fingerprint": source.fingerprint, "mode": mode, "beam": beam,
            "ctc_weight": w, "search": SEARCH_VERSION}
    def previous_rows() -> dict:
        from .schema import OBJECT, Each, check, opt

        previous = (check(read_json(out / "results.json"), {opt("splits"): Each(OBJECT)}, out / "results.json")
                    if (out / "results.json").exists() else {})
        if previous and "search" not in previous:
            raise SpeechrqError(f"{out}: holds a results.json that `asr decode` did not write; use another --out")
        if previous and (why := describe_difference({k: previous.get(k) for k in made}, made)):
            raise SpeechrqError(f"{out}: holds decodes made otherwise ({why}); use another --out or delete it")
        return dict(previous.get("splits", {}))

    from .distributed import on_main

    rows = on_main(previous_rows, ctx)
    from .data.corpus import default_split

    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else [default_split(source.dir, "test")]
    for split in splits:
        r = decode_split(rec, source.cuts(split), mode, beam, w, progress=not args.quiet, ctx=ctx)
        if not ctx.is_main:
            continue
        atomic_write_text(out / f"hyp_{split}.txt", "".join(f"{text_id(i, out / f'hyp_{split}.txt')} {h}\n"  # no whitespace in an id
                                                          for i, h in zip(r["ids"], r["hyps"])))
        rows[split] = {k: r[k] for k in ("cer", "wer", "utterances", "unscored", "cer_by_language") if k in r}
        unscored = f", {r['unscored']} without a transcript not scored" if r["unscored"] else ""
        print(f"{split}: CER {r['cer']:.2f}  WER {r['wer']:.2f}  ({r['utterances']} utterances{unscored}, {mode}, beam {beam})")
        if r.get("cer_by_language"):
            print(f"{split}: CER per language: " + ", ".join(f"{lang} {c:.2f}" for lang, c in r["cer_by_language"].items()))
    if ctx.is_main:
        atomic_write_json(out / "results.json", {"checkpoint": str(rec.path), "units": str(source.dir), **made, "splits": rows})
        print(f"{out}: results.json, hyp_*.txt")


@_holds(lambda a: a.out, "an ASR comparison")
def cmd_asr_compare(args) -> None:
    from .data.corpus import default_split
    from .studies.discrete_asr import compare, format_compare, parse_ms, parse_rpq

    mode, beam, w = _decode_args(args)
    if float(f"{args.alpha:g}") != args.alpha:
        raise SpeechrqError(f"--alpha {args.alpha!r}: give at most 6 significant digits (it names the rows: {args.alpha:g})")
    if args.k < 2 or not 0 < args.alpha <= 1 or args.frames < 1:
        raise SpeechrqError(f"--k {args.k} / --alpha {args.alpha} / --frames {args.frames}: k >= 2, alpha in (0, 1], frames >= 1")
    report = compare(args.encoder, args.layer, args.corpus, args.out, args.config, args.k, parse_ms(args.pq, "--pq"),
                     parse_rpq(args.rpq, args.alpha), args.alpha, args.frames, args.seed, list(args.set or []),
                     args.test_split or default_split(args.corpus, "test"), beam, w,
                     mode, progress=not args.quiet, continuous=not args.no_continuous, jobs=args.jobs,
                     seeds=int_list(args.seeds, "--seeds"), kmeans_inputs=tuple(x.strip() for x in args.kmeans_inputs.split(",") if x.strip()),
                     unit_bpe=args.unit_bpe, rvq_ms=parse_ms(args.rvq, "--rvq"), frame_ms=args.frame_ms)
    print(format_compare(report), end="")
    print(f"{args.out}: compare.json, compare.md, compare_errors.json.gz")


@_holds(lambda a: a.prefix, "tables")
def cmd_asr_tables(args) -> None:
    from .studies.rpq_tables import format_tables, write_tables

    t = write_tables(args.comparisons, args.prefix, args.logs)
    print(format_tables(t), end="")
    print(f"{args.prefix}.json, {args.prefix}.md, {args.prefix}_figure6.png, {args.prefix}_errors.json.gz")


def cmd_asr_transcribe(args) -> None:
    from .asr.decode import Recognizer, read_audio

    mode, beam, w = _decode_args(args)
    audio, problems = [], []
    for p in args.audio:  # every unusable file named at once, not only the first
        try:
            audio.append(read_audio(p))
        except SpeechrqError as e:
            problems.append(str(e))
    if problems:
        raise SpeechrqError(f"{len(problems)} of {len(args.audio)} file(s) cannot be transcribed: {'; '.join(problems)}")
    rec = Recognizer(args.checkpoint)
    for path, text in zip(args.audio, rec.transcribe(audio, mode, beam, w, names=args.audio)):
        print(f"{path}\t{text}")


# --------------------------------------------------------------------------- evaluate


@_holds(lambda a: a.out, "an evaluation")
def cmd_evaluate(args) -> None:
    from .encoders import is_pretrained_folder, load_encoder
    from .evaluate.baselines import INIT_SEEDS, RANDOM_PRESET, check_random_init, make_baselines
    from .evaluate.run import evaluate, format_table, model_name, resolve_checkpoints
    from .evaluate.finetune import FinetuneConfig
    from .evaluate.splits import DEFAULT_FOLD, leave_one_out, parse_splits
    from .pretrain.stages import branch_parent

    if args.every is not None and args.every < 1:
        raise SpeechrqError(f"--every: must be >= 1, got {args.every}")
    if not args.random_baseline and (given := [f for f, v in (("--random-preset", args.random_preset),
                                                              ("--random-init-seeds", args.random_init_seeds)) if v is not None]):
        raise SpeechrqError(f"{' / '.join(given)}: set the random-init baseline, so give --random-baseline too")
    random_preset = (RANDOM_PRESET if args.random_preset is None else args.random_preset) if args.random_baseline else None
    init_seeds = INIT_SEEDS if args.random_init_seeds is None else args.random_init_seeds
    if random_preset is not None:
        check_random_init(random_preset, init_seeds)  # before any checkpoint is read or branch trained
    if args.layer_sets:
        from .studies.layer_study import layer_study, parse_layer_sets

        if len(args.checkpoints) != 1:
            raise SpeechrqError("--layer-sets: give exactly one stage-0 checkpoint to branch from")
        checkpoints = layer_study(args.checkpoints[0], parse_layer_sets(args.layer_sets), args.study_steps, args.out,
                                  args.study_config, progress=not args.quiet)
    else:
        checkpoints = resolve_checkpoints(args.checkpoints, args.every)
    encoders = {name: load_encoder(c) for name, c in checkpoints.items()}
    ours = {name: c for name, c in checkpoints.items() if not is_pretrained_folder(c)}
    metas = {name: encoders[name].checkpoint.meta for name in ours}
    steps = {name: int(meta["step"]) for name, meta in metas.items()}
    parents = {name: model_name(p) for name, meta in metas.items() if (p := branch_parent(meta))}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        lrs = [float(x) for x in args.lrs.split(",")]
    except ValueError:
        raise SpeechrqError(f"--lrs: {args.lrs!r} is not a comma-separated list of numbers") from None
    if args.probe_seeds < 1:
        raise SpeechrqError(f"--probe-seeds: must be >= 1, got {args.probe_seeds}")
    if args.probe_jobs is not None and args.probe_jobs < 1:
        raise SpeechrqError(f"--probe-jobs: must be >= 1, got {args.probe_jobs}")
    if args.splits and args.folds:
        raise SpeechrqError("--splits and --folds: give one of them")
    folds = ([parse_splits(args.splits, args.dev_share)] if args.splits
             else leave_one_out(args.folds.split(","), args.dev_share) if args.folds else None)
    try:
        ft_lrs = tuple(float(x) for x in args.ft_lrs.split(","))
    except ValueError:
        raise SpeechrqError(f"--ft-lrs: {args.ft_lrs!r} is not a comma-separated list of numbers") from None
    if args.ft_minutes <= 0 or args.ft_steps < 1:
        raise SpeechrqError(f"--ft-minutes / --ft-steps: must be positive, got {args.ft_minutes:g} / {args.ft_steps}")
    ft = FinetuneConfig(minutes=args.ft_minutes, steps=args.ft_steps, lrs=ft_lrs)
    # the baselines: the corpus's own statistics, a named preset, several init seeds; never a listed encoder's
    made, groups, rule = make_baselines(args.corpus, folds or [DEFAULT_FOLD], args.fbank_baseline, random_preset, init_seeds,
                                        progress=not args.quiet)
    if (clash := sorted((set(made) | set(groups)) & set(encoders))):
        raise SpeechrqError(f"{', '.join(clash)}: an evaluated model has a baseline's name; rename its run directory")
    encoders |= made
    from . import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (states and probes are shared)
        results = evaluate(encoders, args.corpus, tasks, args.out, lrs, args.epochs, progress=not args.quiet, steps=steps,
                           target_analysis=not args.no_target_analysis, preset=args.probe_preset, parents=parents, seeds=args.probe_seeds,
                           folds=folds, finetune=ft, probe_jobs=args.probe_jobs, cache_max_gb=args.cache_max_gb, ctx=ctx,
                           groups=groups, baselines=rule)
    if results is None:  # not rank 0
        return
    print(format_table(results), end="")
    written = ["results.json", "results.md"]
    written += [f for f in ("layer_weights.png", "curves.png", "target_tsne_phones.png", "target_tsne_speakers.png") if (Path(args.out) / f).exists()]
    print(f"{args.out}: {', '.join(written)}")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data.synth import COMMAND_SHARE
    from .evaluate.baselines import INIT_SEEDS, RANDOM_PRESET
    from .evaluate.splits import DEV_SHARE

    p = argparse.ArgumentParser(prog="speechrq", description="Random-quantization speech pre-training and discrete speech units.")
    p.add_argument("--version", action="version", version=f"speechrq {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="synthesize the embedded labelled corpus (English, or --languages) with espeak-ng",
                       description="Synthesize the embedded corpus: speakers, transcripts, commands with intents, "
                       "four emotion styles and phone alignments, as lhotse manifests; with --languages, read sentences "
                       "in each language with its language id. Resumable: a second run "
                       "reuses finished shards or the finished corpus.")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--hours", type=float, default=1.0, help="approximate total audio (default: 1.0)")
    s.add_argument("--speakers", type=int, default=32, help="number of speakers (default: 32)")
    s.add_argument("--seed", type=int, default=0, help="random seed; one seed gives byte-identical output (default: 0)")
    s.add_argument("--command-share", type=float, default=None, metavar="P",
                   help=f"share of utterances that are spoken commands (IC), the rest read sentences; 1.0 makes a "
                        f"command corpus for IC probes (default: {COMMAND_SHARE}; 0 with --languages)")
    s.add_argument("--languages", default=None, metavar="L1,L2,...",
                   help="a multilingual corpus of read sentences in these languages (e.g. en,fr,de,es,ru,cmn): wordfreq's "
                        "frequent words in espeak-ng's voice for each, the language id as a label; --hours and --speakers "
                        "are totals over the languages (default: the English corpus)")
    s.add_argument("--rate-jitter", type=float, default=0.0, metavar="R", help="per-utterance speaking rate: the speaker's "
                   "times a factor in [1-R, 1+R] (default: 0, each speaker one rate)")
    s.add_argument("--pitch-jitter", type=float, default=0.0, metavar="P", help="per-utterance pitch moved by up to P on "
                   "espeak's 0-100 scale, beyond the built-in +-3 (default: 0)")
    s.add_argument("--snr", type=float, default=None, metavar="DB", help="add white noise at this SNR in dB to each "
                   "utterance's speech power (default: none, only a faint floor)")
    s.add_argument("--workers", type=int, default=_cpu_count(), help="parallel processes (default: all cores)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    d = sub.add_parser("data", help="import and inspect corpora", description="Import and inspect corpora.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    from .data.recipes import RECIPES

    i = dsub.add_parser("import", help="import a real corpus into a speechrq corpus directory",
                        description="Import a corpus from its released layout. Every audio file is decoded and checked; "
                        "bad files are skipped and reported, never fatal. SRC and OUT may be relative: audio under OUT is "
                        "stored relative to OUT and other audio by its absolute path, so the corpus reads the same from any "
                        "directory and OUT can be moved or renamed. Utterance and speaker ids are made safe for Kaldi/ESPnet "
                        "text and file names: whitespace and control characters become '_', '/' becomes '__' (the original "
                        "is kept in the manifest as custom source_id / source_speaker); two names that would become one id "
                        "are refused, naming both. Multilingual corpora: mlsuperb (SRC/DATASET/LANG/transcript_*.txt and "
                        "wav/), commonvoice (SRC/LANG/{train,dev,test}.tsv and clips/), wenetspeech (SRC/WenetSpeech.json); "
                        "the language id goes to each supervision. Transcripts that normalise to nothing are kept and "
                        "listed in OUT/import_report.json (a warning says how many).")
    i.add_argument("kind", metavar="KIND", choices=sorted(RECIPES), help=f"one of: {', '.join(RECIPES)}")
    i.add_argument("src", metavar="SRC", help="the corpus as released")
    i.add_argument("out", metavar="OUT", help="corpus directory to write")
    i.add_argument("--workers", type=int, default=_cpu_count(), help="parallel audio checks (default: all cores)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.add_argument("--allow-overlap", action="store_true",
                   help="import a recording that is in a training split and a dev/test split, or in two held-out splits "
                        "(same id or same audio bytes; refused by default); counted in OUT/import_report.json either way")
    i.set_defaults(func=cmd_data_import)
    sm = dsub.add_parser("summary", help="print a corpus directory's counts", description="Print a corpus directory's counts.")
    sm.add_argument("corpus_dir", metavar="CORPUS_DIR")
    sm.set_defaults(func=cmd_data_summary)

    f = sub.add_parser("features", help="log-Mel feature utilities", description="Log-Mel feature utilities.")
    fsub = f.add_subparsers(dest="features_command", required=True, metavar="SUBCOMMAND")
    st = fsub.add_parser("stats", help="global log-Mel mean/std of a corpus split (for normalisation)",
                         description="Compute global per-bin log-Mel mean and std over a seeded sample of a split.")
    st.add_argument("corpus_dir", metavar="CORPUS_DIR")
    st.add_argument("--split", help="split to sample (default: the corpus's training split: train, or its one train* split)")
    st.add_argument("--max-utterances", type=int, default=2000, help="sample size (default: 2000)")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--out", help="output JSON (default: CORPUS_DIR/feature_stats.json)")
    st.add_argument("--force", action="store_true", help="recompute even if the output exists")
    st.add_argument("--quiet", action="store_true", help="no progress bar")
    st.set_defaults(func=cmd_features_stats)

    pt = sub.add_parser("pretrain", help="BEST-RQ masked-prediction pre-training (one process, or many with torchrun)",
                        description="Pre-train an encoder as the YAML config says (see configs/pretrain/). "
                        "For several GPUs or nodes: torchrun --nproc-per-node G -m speechrq pretrain CONFIG.")
    pt.add_argument("config", metavar="CONFIG", help="YAML config")
    pt.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. --set optim.lr=3e-4 (repeatable; the same key twice: the later wins)")
    pt.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    pt.add_argument("--init-from", metavar="CHECKPOINT", help="branch a Latent-RQ stage from another run's checkpoint "
                    "(RUN/checkpoints/step_N): the student starts from it, the target encoder is its encoder, "
                    "steps continue from N (same as --set targets.init_from=CHECKPOINT)")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(func=cmd_pretrain)

    ex = sub.add_parser("export", help="a small copy of a checkpoint for frozen-encoder use (evaluation, units, branches)",
                        description="Copy a checkpoint's encoder, feature statistics and quantizers (and θ) to OUT, without "
                        "the prediction heads and the optimizer state: what evaluate, target analyses and a Latent-RQ branch "
                        "(--init-from) read. It cannot resume its run.")
    ex.add_argument("checkpoint", metavar="CHECKPOINT", help="RUN/checkpoints/step_N")
    ex.add_argument("out", metavar="OUT", help="directory to write (e.g. OUT_RUN/checkpoints/step_N)")
    ex.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", help="SUPERB-style probes (ASR, SID, IC, ER, PR) and fine-tuning (FT) of encoders",
                        description="Probe each checkpoint's frozen encoder on a corpus: hidden states are computed once "
                        "and cached (float16), probes train with an lr sweep and dev-set selection. " + MIN_AUDIO_HELP)
    ev.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="speechrq checkpoints (RUN/checkpoints/step_N), run "
                    "directories (their newest checkpoint, or every --every N steps), or local Hugging Face "
                    "WavLM/HuBERT/wav2vec2 folders (baselines)")
    ev.add_argument("--corpus", required=True, help="a corpus directory (its train/dev/test splits unless --splits or --folds)")
    ev.add_argument("--splits", metavar="SPEC", help="the corpus parts each probe trains, selects and scores on, e.g. "
                    "train=train-clean-100,dev=dev-clean,test=test-clean ('+' joins parts; without dev, --dev-share of train "
                    "is held out)")
    ev.add_argument("--folds", metavar="PARTS", help="leave-one-out folds over these parts, e.g. "
                    "session1,session2,session3,session4,session5 (IEMOCAP, as SUPERB ER): test on each in turn, train on "
                    "the rest, dev held out from train; scores are the mean over folds")
    ev.add_argument("--dev-share", type=float, default=DEV_SHARE, metavar="P",
                    help=f"share of the training utterances held out as dev when no dev part is named (default: {DEV_SHARE})")
    ev.add_argument("--tasks", default="asr,sid,ic,er", help="comma-separated, of asr, sid, ic, er, pr (phone "
                    "recognition, linear CTC; needs phone alignments) and ft (the whole encoder fine-tuned with a CTC head on "
                    "--ft-minutes of labelled audio: PER with phone alignments, else CER) and lid (language identification; needs two "
                    "languages or more); on a corpus of several languages every probe is also scored per language "
                    "(default: asr,sid,ic,er)")
    ev.add_argument("--out", required=True, help="output directory")
    ev.add_argument("--random-baseline", action="store_true", help="also probe randomly initialised encoders of the "
                    "--random-preset, one weight draw per init seed, their log-Mel normalised with the corpus's own statistics "
                    "(CORPUS/feature_stats.json, computed from its training split when missing); one row, its spread over "
                    "init seeds × probe seeds. Whatever checkpoints are listed, in any order, it is the same")
    ev.add_argument("--random-preset", metavar="PRESET", help=f"the random-init baseline's encoder preset: paper, small or tiny "
                    f"(default: {RANDOM_PRESET})")
    ev.add_argument("--random-init-seeds", type=int, metavar="N", help=f"the random-init baseline's weight draws, init seeds "
                    f"0 .. N-1 (default: {INIT_SEEDS})")
    ev.add_argument("--fbank-baseline", action="store_true", help="also probe log-Mel normalised with the corpus's own "
                    "statistics (CORPUS/feature_stats.json, as for --random-baseline), stacked to the 40 ms grid: the other "
                    "floor a pre-trained encoder must beat")
    ev.add_argument("--lrs", default="1e-3,1e-2", help="probe learning rates to sweep (default: 1e-3,1e-2)")
    ev.add_argument("--epochs", type=int, default=30, help="probe epochs (default: 30)")
    ev.add_argument("--probe-seeds", type=int, default=1, metavar="N", help="train every probe with N seeds and report the mean "
                    "test score with its standard deviation, so a difference can be told from probe noise (default: 1)")
    ev.add_argument("--ft-minutes", type=float, default=10.0, metavar="M", help="ft: minutes of labelled training audio "
                    "(Libri-light: 10 or 60) (default: 10)")
    ev.add_argument("--ft-steps", type=int, default=200, metavar="N", help="ft: optimizer steps of 60 s of audio (default: 200)")
    ev.add_argument("--ft-lrs", default="2e-3", metavar="LRS", help="ft: learning rates to sweep (default: 2e-3)")
    ev.add_argument("--probe-preset", default="cpu", choices=["cpu", "superb"],
                    help="probe sizes: cpu (small, the default) or superb (SUPERB's widths, for a GPU)")
    ev.add_argument("--every", type=int, metavar="N", help="for run directories: evaluate each checkpoint whose step is a "
                    "multiple of N and plot the scores against the step (curves.png)")
    ev.add_argument("--layer-sets", metavar="SETS", help="Table 2 layer study: branch the one given stage-0 checkpoint once per "
                    "target-layer set (e.g. '1;2;1,2'), train each --study-steps steps, and probe the branches")
    ev.add_argument("--study-steps", type=int, default=100, help="steps per layer-study branch (default: 100)")
    ev.add_argument("--study-config", help="pre-training config of the branches (default: the checkpoint's own)")
    ev.add_argument("--no-target-analysis", action="store_true", help="skip the target t-SNE and separability numbers")
    ev.add_argument("--probe-jobs", type=int, metavar="N", help="train N probes side by side, one process each, sharing the "
                    "cores (default: one per core on a CPU, at most 8; one on a GPU); fewer when their hidden states would not fit "
                    "in half the available memory")
    ev.add_argument("--cache-max-gb", type=float, metavar="GB", help="disk budget for the cached hidden states of all encoders "
                    "(decimal GB; default: 80%% of the free space where they are kept). What the probes read is estimated first "
                    "and printed; utterance means are cached before frames, and what does not fit is recomputed whenever a probe "
                    "reads it, with the same results. 0 caches nothing (s3prl's way)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)

    u = sub.add_parser("units", help="discrete units from an encoder layer: k-means, RVQ, PQ, RPQ",
                       description="Discrete units from one layer of a speechrq checkpoint or a local Hugging Face "
                       "WavLM/HuBERT/wav2vec2/data2vec-audio folder. Layer -1 is the front end (Hugging Face's hidden_states[0]), "
                       "k block k's output (hidden_states[k + 1]).")
    usub = u.add_subparsers(dest="units_command", required=True, metavar="SUBCOMMAND")

    def encoder_args(q) -> None:
        q.add_argument("--encoder", required=True, help="a speechrq checkpoint, a local Hugging Face model folder, or a corpus's feature_stats.json (the stacked log-Mel, 320 dimensions, --layer -1)")
        q.add_argument("--layer", type=int, required=True, help="-1 = front end, k = block k")
        q.add_argument("--corpus", required=True, help="corpus directory")
        q.add_argument("--split", help="split the training sample is drawn from (default: the corpus's training split: train, "
                       "or its one train* split)")
        q.add_argument("--frames", type=int, help="training sample: about this many frames (seeded)")
        q.add_argument("--fraction", type=float, help="training sample: this share of the corpus's frames (seeded)")
        q.add_argument("--seed", type=int, default=0, help="sample, subsets and k-means seed (default: 0)")
        q.add_argument("--niter", type=int, default=20, help="k-means iterations (default: 20)")
        q.add_argument("--normalize", default="none", choices=["none", "standardize"],
                       help="per-dimension feature normalisation before quantizing (default: none)")
        q.add_argument("--max-duration", type=float, default=30.0, help="padded audio seconds per encoder batch (default: 30; more on a GPU)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.add_argument("--frame-ms", type=int, metavar="MS", help="frame shift of the units in ms (default: the source's own: 20 for a Hugging Face "
                   "model, as in the RPQ paper; 40 for a speechrq checkpoint or the log-Mel). 40 puts a Hugging Face model's "
                   "20 ms frames on speechrq's 40 ms grid (pairs averaged, the last one padded), the grid evaluation uses; "
                   "60, 80, ... average 3, 4, ... frames")

    uf = usub.add_parser("fit", help="sample a layer's frames and fit a quantizer",
                         description="Stream a seeded sample of the layer's frames (float16 shards, bounded memory) into "
                         "OUT/sample and fit a quantizer on it (faiss k-means per sub-space): OUT/units.json, OUT/units.safetensors. "
                         + MIN_AUDIO_HELP)
    encoder_args(uf)
    uf.add_argument("--out", required=True, help="output directory")
    uf.add_argument("--kind", default="kmeans", choices=["kmeans", "rvq", "pq", "rpq"], help="quantizer (default: kmeans)")
    uf.add_argument("--k", type=int, default=2000, help="centroids per codebook (default: 2000, the paper's)")
    uf.add_argument("--M", type=int, default=None, help="streams: RVQ levels, PQ/RPQ sub-spaces (default: 8; k-means has one)")
    uf.add_argument("--alpha", type=float, default=0.125, help="RPQ: share of dimensions per sub-space (default: 0.125)")
    uf.add_argument("--max-points-per-centroid", type=int, default=256,
                    help="faiss trains on at most this many points per centroid and subsamples beyond (default: 256)")
    uf.set_defaults(func=cmd_units_fit)
    ue = usub.add_parser("encode", help="units of whole corpora, as lhotse manifests",
                         description="Encode splits with a fitted quantizer: OUT/cuts_SPLIT.jsonl.gz (the cuts with a 'units' "
                         "array, uint16 [frames, M]), OUT/arrays/, Kaldi-style OUT/units_SPLIT.txt for single-stream units, "
                         "and with --bpe, de-duplicated units in sentencepiece BPE (OUT/bpe.model, OUT/units_SPLIT.bpe.txt). Resumable. "
                         "An utterance id with whitespace (a hand-made manifest's) is refused rather than written into a text line. "
                         "The manifests' paths are absolute (lhotse reads them from any directory); after moving OUT, "
                         "python -c \"from speechrq.data.corpus import relocate; relocate('OUT')\" rewrites them (speechrq reads a "
                         "moved OUT as it is). " + MIN_AUDIO_HELP)
    ue.add_argument("quantizer", metavar="QUANTIZER", help="a `speechrq units fit` output directory")
    ue.add_argument("--corpus", required=True, help="corpus directory")
    ue.add_argument("--splits", help="comma-separated splits (default: every split the corpus has)")
    ue.add_argument("--out", required=True, help="output directory")
    ue.add_argument("--bpe", type=int, help="single-stream units: train BPE of this vocabulary on the first split's de-duplicated units")
    ue.add_argument("--max-duration", type=float, default=30.0, help="padded audio seconds per encoder batch (default: 30; more on a GPU)")
    ue.add_argument("--quiet", action="store_true", help="no progress bars")
    ue.set_defaults(func=cmd_units_encode)
    ur = usub.add_parser("report", help="k-means, PQ and RPQ over a grid of M and alpha, beside the paper's theory",
                         description="Fit every quantizer of the grid on one training sample, measure on held-out frames: "
                         "reconstruction error, codebook usage and entropy, bits per second, compression, phone purity and PNMI, "
                         "and RPQ's error ratio against eqs. 13 and 17: OUT/report.json, OUT/report.md, OUT/report.png. "
                         + MIN_AUDIO_HELP)
    encoder_args(ur)
    ur.add_argument("--out", required=True, help="output directory")
    ur.add_argument("--k", type=int, default=2000, help="centroids per codebook (default: 2000)")
    ur.add_argument("--kinds", default="kmeans,pq,rpq", help="comma-separated kinds (default: kmeans,pq,rpq; rvq too)")
    ur.add_argument("--M", default="2,4,8,16,32", help="stream counts for PQ, RPQ and RVQ (default: 2,4,8,16,32)")
    ur.add_argument("--alphas", default="0.0625,0.125,0.25,0.5,1", help="RPQ dimension shares (default: 0.0625,0.125,0.25,0.5,1)")
    ur.add_argument("--eval-split", help="held-out split measured (default: the corpus's dev split: dev, or its one dev*/valid* "
                    "split)")
    ur.add_argument("--eval-frames", type=int, default=20000, help="held-out frames measured (default: 20000)")
    ur.set_defaults(func=cmd_units_report)
    a = sub.add_parser("asr", help="discrete-unit ASR: E-Branchformer, hybrid CTC/attention, joint beam search",
                       description="ASR from discrete units (or the same layer's continuous features): train, decode test "
                       "sets, transcribe audio files.")
    asub = a.add_subparsers(dest="asr_command", required=True, metavar="SUBCOMMAND")
    at = asub.add_parser("train", help="train on a `speechrq units encode` directory",
                         description="Train as the YAML config says (see configs/asr/). For several GPUs: "
                         "torchrun --nproc-per-node G -m speechrq asr train CONFIG.")
    at.add_argument("config", metavar="CONFIG", help="YAML config")
    at.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable; the same key twice: the later wins)")
    at.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    at.add_argument("--quiet", action="store_true", help="no progress bar")
    at.set_defaults(func=cmd_asr_train)

    def decode_args(q) -> None:
        q.add_argument("--mode", default="joint", choices=["joint", "attention", "ctc"],
                       help="joint CTC/attention beam search, attention beam search (greedy with --beam 1), or greedy CTC")
        q.add_argument("--beam", type=int, default=10, help="beam size (default: 10, the paper's)")
        q.add_argument("--ctc-weight", type=float, default=0.3, help="CTC weight of the joint score (default: 0.3)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")

    ad = asub.add_parser("decode", help="test sets to hypotheses, CER and WER",
                         description="Decode splits of the units directory the model was trained on (or --units): "
                         "OUT/hyp_SPLIT.txt and OUT/results.json. " + MIN_AUDIO_HELP)
    ad.add_argument("checkpoint", metavar="CHECKPOINT", help="an ASR checkpoint or run directory (its newest checkpoint)")
    ad.add_argument("--splits", help="comma-separated splits (default: the units folder's test split: test, or its one test* "
                    "split)")
    ad.add_argument("--units", help="a units directory encoded by the same quantizer (default: the training one)")
    ad.add_argument("--out", help="output directory (default: RUN/decode/step_N_MODE_beamB)")
    decode_args(ad)
    ad.set_defaults(func=cmd_asr_decode)
    ac = asub.add_parser("compare", help="Table II: continuous vs k-means vs PQ vs RPQ units, one ASR model each",
                         description="Fit k-means, PQ (each M of --pq) and RPQ (each M of --rpq) on one layer, encode the corpus, "
                         "train CONFIG's ASR model on each and on the continuous features, decode the test split: "
                         "OUT/compare.json, OUT/compare.md (CER, WER, time per epoch, input bits/s). Resumable.")
    ac.add_argument("config", metavar="CONFIG", help="ASR YAML config (data.units, data.input and out_dir are set per system)")
    ac.add_argument("--encoder", required=True, help="a speechrq checkpoint, a local Hugging Face model folder, or a corpus's feature_stats.json (the stacked log-Mel, 320 dimensions, --layer -1)")
    ac.add_argument("--layer", type=int, required=True, help="-1 = front end, k = block k")
    ac.add_argument("--frame-ms", type=int, metavar="MS", help="frame shift of the units in ms (default: the source's own: 20 for a Hugging Face "
                   "model, as in the RPQ paper; 40 for a speechrq checkpoint or the log-Mel). 40 puts a Hugging Face model's "
                   "20 ms frames on speechrq's 40 ms grid (pairs averaged, the last one padded), the grid evaluation uses; "
                   "60, 80, ... average 3, 4, ... frames")
    ac.add_argument("--corpus", required=True, help="corpus directory (train, dev and the test split)")
    ac.add_argument("--out", required=True, help="output directory")
    ac.add_argument("--k", type=int, default=2000, help="centroids per codebook (default: 2000)")
    ac.add_argument("--pq", default="2,4", help="PQ stream counts (default: 2,4)")
    ac.add_argument("--rpq", default="4", metavar="M[@ALPHA],...", help="RPQ stream counts, each with its own share of "
                    "dimensions after @ or --alpha's (default: 4; 2,4,8,16,32,32@0.25,32@0.5 for Tables II and IV)")
    ac.add_argument("--alpha", type=float, default=0.125, help="RPQ share of dimensions (default: 0.125)")
    ac.add_argument("--rvq", default="", metavar="V,...", help="RVQ level counts: Table III's rows (default: none)")
    ac.add_argument("--frames", type=int, default=60000, help="k-means training sample in frames (default: 60000)")
    ac.add_argument("--seed", type=int, default=0, help="base of the quantizer seeds: seed S of --seeds draws its sample, k-means initialisations and RPQ subsets with --seed + S (default: 0)")
    ac.add_argument("--test-split", help="split scored (default: the corpus's test split: test, or its one test* split)")
    ac.add_argument("--no-continuous", action="store_true", help="leave out the continuous-feature row (the ceiling)")
    ac.add_argument("--seeds", default="0", metavar="S,S,...", help="replicate seeds: every system is built once per seed, its "
                    "quantizer drawn with seed --seed + S and its model trained with train.seed S; CER and WER reported as mean ± "
                    "standard deviation, differences with t-intervals over seeds and utterances, verdicts after Holm's rule "
                    "(default: 0, which gives no interval; 0,1,2 to see training noise)")
    ac.add_argument("--kmeans-inputs", default="units", metavar="KINDS", help="k-means rows, from one quantizer: units (raw "
                    "aligned frames), dedup (repeats removed), bpe (de-dup + unit BPE: the paper's and ESPnet's k-means baseline) "
                    "(default: units; units,dedup,bpe for the paper's protocol)")
    ac.add_argument("--unit-bpe", type=int, default=1000, metavar="V", help="unit BPE vocabulary of the bpe row (default: 1000)")
    ac.add_argument("--jobs", type=int, default=1, metavar="N", help="run N trainings side by side, one process each, sharing "
                    "the cores (for a CPU; default: 1); their times per epoch are then measured on a shared machine")
    ac.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of CONFIG for every system (repeatable; the same key twice: the later wins)")
    decode_args(ac)
    ac.set_defaults(func=cmd_asr_compare)
    atb = asub.add_parser("tables", help="the RPQ paper's Tables I-IV, VII and Figure 6 from finished comparisons",
                          description="Lay out finished `asr compare` outputs as the RPQ paper's tables: k-means by k (one "
                          "comparison per k), PQ and RPQ by M against the paper's baseline and raw k-means, RVQ beside them, RPQ "
                          "by alpha (the best alpha chosen on dev), the learning-rate peak in epochs, time per epoch; every difference "
                          "with a t-interval over seeds and test utterances, verdicts after Holm's rule within each table: "
                          "PREFIX.json, PREFIX.md, PREFIX_figure6.png and PREFIX_errors.json.gz (the per-utterance errors).")
    atb.add_argument("comparisons", nargs="+", metavar="OUT", help="`asr compare` output directories")
    atb.add_argument("--prefix", required=True, help="output path without suffix (e.g. docs/rpq_tables)")
    atb.add_argument("--logs", metavar="DIR", help="also copy every run's training log there, gzipped (to ship beside the tables)")
    atb.set_defaults(func=cmd_asr_tables)
    tr = asub.add_parser("transcribe", help="audio files to text: encoder, units, ASR model, search, in one call",
                         description="Transcribe sound files (any rate, resampled to 16 kHz): one line per file, PATH<TAB>TEXT. "
                         + MIN_AUDIO_HELP)
    tr.add_argument("checkpoint", metavar="CHECKPOINT", help="an ASR checkpoint or run directory")
    tr.add_argument("audio", metavar="AUDIO", nargs="+", help="sound files")
    decode_args(tr)
    tr.set_defaults(func=cmd_asr_transcribe)
    tg = sub.add_parser("targets", help="target sources: rank Mel and a checkpoint's layers", description="Target sources.")
    tsub = tg.add_subparsers(dest="targets_command", required=True, metavar="SUBCOMMAND")
    tk = tsub.add_parser("rank", help="rank Mel and every layer of a checkpoint by the quality of the targets each would give",
                         description="Project Mel and every layer (front end -1, blocks 0..L-1) of CHECKPOINT by the same number "
                         "of codebooks and score the targets: phone 5-NN accuracy of phone segments (when the corpus has "
                         "alignments), speaker 5-NN accuracy of utterance means, and the label-free perturbation agreement "
                         "(kappa of the targets of clean and noisy log-Mel), with its Spearman correlation to the labelled ones.")
    tk.add_argument("checkpoint", metavar="CHECKPOINT", help="a speechrq pre-training checkpoint")
    tk.add_argument("--corpus", required=True, help="corpus directory")
    tk.add_argument("--split", help="split to measure on (default: the corpus's dev split: dev, or its one dev*/valid* split)")
    tk.add_argument("--per-speaker", type=int, default=20, metavar="N", help="utterances per speaker (default: 20)")
    tk.add_argument("--num-codebooks", type=int, default=None, metavar="N", help="codebooks per source (default: the checkpoint's)")
    tk.add_argument("--sigma", type=float, default=0.5, help="perturbation std in normalised log-Mel units (default: 0.5)")
    tk.add_argument("--out", help="write the ranking as JSON here")
    tk.set_defaults(func=cmd_targets_rank)
    rp = sub.add_parser("report", help="every claim of both papers with the number measured here, its noise and a verdict",
                        description="Render DEMO/report.md from the demo's JSON outputs and the shipped studies in --docs.")
    rp.add_argument("demo", metavar="DEMO", help="the demo's output folder (e.g. exp/demo)")
    rp.add_argument("--docs", default="docs", help="folder of the shipped study JSONs (default: docs)")
    rp.add_argument("--out", help="output file (default: DEMO/report.md)")
    rp.set_defaults(func=cmd_report)
    b = sub.add_parser("bench", help="benchmarks", description="Benchmarks.")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND")
    bp = bsub.add_parser("pretrain", help="seconds per step, audio seconds per second and MFU of pre-training",
                         description="Time optimizer steps of a preset on synthetic batches; MFU is measured against "
                         "this device's matmul peak, measured in the same run.")
    bp.add_argument("--preset", default="tiny", help="encoder preset (default: tiny)")
    bp.add_argument("--steps", type=int, default=10, help="timed steps (default: 10)")
    bp.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    bp.add_argument("--batch-seconds", type=float, default=None, help="audio seconds per step (default: by preset)")
    bp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bp.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    bp.add_argument("--num-codebooks", type=int, default=18)
    bp.add_argument("--codebook-size", type=int, default=4096)
    bp.add_argument("--latent", action="store_true", help="also time Latent-RQ without and with a warm target cache, "
                    "interleaved with BEST-RQ on the same batch, and print the ratios and the compute floor")
    bp.add_argument("--layers", help="Latent-RQ target layers, e.g. 5,6,7,8,9,10 (default: the preset's)")
    bp.add_argument("--json", action="store_true", help="print JSON")
    bp.set_defaults(func=cmd_bench_pretrain)
    bq = bsub.add_parser("quality", help="pre-train for a budget, probe every N steps against random init and filterbanks",
                         description="Pre-train CONFIG for --steps (reusing a finished run), probe every --every steps over "
                         "--probe-seeds seeds beside a random initialisation and the filterbank floor, and report when the "
                         "encoder first beats both beyond probe noise: OUT/quality.json, OUT/quality.png.")
    bq.add_argument("config", metavar="CONFIG", help="pre-training YAML config")
    bq.add_argument("--corpus", required=True, help="corpus directory: pre-training data and probe splits")
    bq.add_argument("--out", required=True, help="output directory (the run is OUT/run, the probes OUT/eval)")
    bq.add_argument("--steps", type=int, default=2000, help="pre-training budget in steps (default: 2000)")
    bq.add_argument("--every", type=int, default=500, help="probe every N steps (default: 500)")
    bq.add_argument("--tasks", default="pr", help="comma-separated probes: pr and/or ft (default: pr)")
    bq.add_argument("--probe-seeds", type=int, default=3, metavar="N", help="probe seeds per point (default: 3)")
    bq.add_argument("--demo-step", type=int, default=1000, help="report the margin at this step (the demo's budget; default: 1000)")
    bq.add_argument("--epochs", type=int, default=30, help="PR probe epochs (default: 30)")
    bq.add_argument("--ft-steps", type=int, default=200, metavar="N", help="ft: fine-tuning steps (default: 200)")
    bq.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable; the same key twice: the later wins)")
    bq.add_argument("--quiet", action="store_true", help="no progress bars")
    bq.set_defaults(func=cmd_bench_quality)
    bl = bsub.add_parser("latent", help="Latent-RQ arms against BEST-RQ at equal steps over pre-training seeds",
                         description="For each pre-training seed, train a BEST-RQ parent for --steps, branch every Latent-RQ arm "
                         "from it (middle layers, ranked-best layers, auto, the paper's 20/50/80%% schedule, lr continuing, no "
                         "standardisation) to the same step, optionally continue --reference with Mel and with latent targets, "
                         "probe every final encoder, and tabulate mean ± std over seeds with paired 95%% intervals: "
                         "OUT/study.json, OUT/study.md. Finished runs and probes are reused.")
    bl.add_argument("--config", default="configs/pretrain/tiny.yaml", help="the BEST-RQ parent's config")
    bl.add_argument("--latent-config", default="configs/pretrain/tiny_latent.yaml", help="the Latent-RQ branches' config")
    bl.add_argument("--corpus", required=True, help="corpus directory (pre-training data and probe splits)")
    bl.add_argument("--out", required=True, help="output directory")
    bl.add_argument("--seeds", default="0,1,2", help="pre-training seeds (default: 0,1,2)")
    bl.add_argument("--steps", type=int, default=1000, help="budget in steps, a multiple of 10 (default: 1000)")
    bl.add_argument("--middle-layers", default="1,2", help="the paper's middle layers scaled to the preset (default: 1,2 of tiny's "
                    "4 blocks, the demo's layers before this study)")
    bl.add_argument("--best-layers", required=True, help="the ranked-best layers (from `speechrq targets rank` on dev), e.g. -1,0")
    bl.add_argument("--tasks", default="pr,sid,er,ft", help="probes (default: pr,sid,er,ft)")
    bl.add_argument("--probe-seeds", type=int, default=3, metavar="N", help="probe seeds per encoder (default: 3)")
    bl.add_argument("--ft-arms", help="';'-separated arm names that get the ft probe (default: all)")
    bl.add_argument("--reference", help="a strong checkpoint to continue with Mel and with latent targets")
    bl.add_argument("--reference-layers", help="θ's layers for the reference's latent arm (default: --best-layers)")
    bl.add_argument("--arms", help="';'-separated arm names to run besides BEST-RQ (default: every arm)")
    bl.add_argument("--reference-steps", type=int, metavar="N", help="steps the strong-θ pair continues the reference (default: "
                    "half of --steps; every fifth probed for its Figure 3 curve)")
    bl.add_argument("--reference-set", action="append", metavar="KEY=VALUE", help="overrides for the reference arms (its quantizer; repeatable; the same key twice: the later wins)")
    bl.add_argument("--epochs", type=int, default=30, help="PR/SID/ER probe epochs (default: 30)")
    bl.add_argument("--ft-steps", type=int, default=200, metavar="N", help="ft: fine-tuning steps (default: 200)")
    bl.add_argument("--ft-probe-seeds", type=int, default=1, metavar="N", help="probe seeds of ft (default: 1)")
    bl.add_argument("--curve-probe-seeds", type=int, default=1, metavar="N", help="probe seeds of Figure 3's intermediate "
                    "PR points (default: 1)")
    bl.add_argument("--quiet", action="store_true", help="no progress bars")
    bl.set_defaults(func=cmd_bench_latent)
    bw = bsub.add_parser("sweep", help="train each point of a recipe sweep for the same wall clock, probe PR, tabulate",
                         description="Train every point of SWEEP (a YAML file: config, steps, points of KEY=VALUE overrides) "
                         "for the wall clock of its base recipe's steps (step times measured per point), probe each final "
                         "checkpoint with phone recognition beside random init and the filterbank: OUT/sweep.json, OUT/sweep.md. "
                         "Finished points and probes are reused.")
    bw.add_argument("sweep", metavar="SWEEP", help="sweep file, e.g. benchmarks/sweep_tiny.yaml")
    bw.add_argument("--corpus", required=True, help="corpus directory: pre-training data (unless a point sets data.corpus) and probes")
    bw.add_argument("--out", required=True, help="output directory (runs in OUT/runs, probes in OUT/eval)")
    bw.add_argument("--only", help="comma-separated point names to train now (the table covers every finished point)")
    bw.add_argument("--probe-seeds", type=int, default=3, metavar="N", help="probe seeds per point (default: 3)")
    bw.add_argument("--epochs", type=int, default=30, help="PR probe epochs (default: 30)")
    bw.add_argument("--quiet", action="store_true", help="no progress bars")
    bw.set_defaults(func=cmd_bench_sweep)
    return p


def _other_rank() -> str | None:
    """Under torchrun, this process's rank when it is not rank 0 (None otherwise)."""
    rank = os.environ.get("RANK", "0")
    return rank if os.environ.get("WORLD_SIZE", "1") != "1" and rank != "0" else None


RANK0_GRACE_SECONDS = 3.0


def _let_rank0_speak() -> None:
    """A rank that leaves silently because rank 0 refuses the job waits a moment first: torchrun ends the whole group
    when one rank exits with an error, and rank 0 must have printed why before that."""
    import time

    time.sleep(RANK0_GRACE_SECONDS)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="speechrq: %(levelname)s: %(message)s")
    parser = build_parser()
    rank = _other_rank()
    if rank is None:
        args = parser.parse_args(argv)
    else:  # every rank parses the same command line: a usage error is rank 0's to print
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    install_termination_handlers()  # SIGTERM/SIGHUP unwind like an exception: temporaries removed, nothing half-written
    try:
        args.func(args)
    except SpeechrqError as e:
        from .distributed import share_started

        # before its share of a pass, a rank refuses exactly what rank 0 refuses (same inputs, same code): said once
        if rank is None or share_started():
            print(f"speechrq: error{'' if rank is None else f' (rank {rank})'}: {e}", file=sys.stderr)
        else:
            _let_rank0_speak()
        return 2
    except OtherRankFailed:  # rank 0 said why, once
        _let_rank0_speak()
        return 2
    except KeyboardInterrupt:
        if rank is None:
            print("speechrq: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        import signal

        if rank is None:
            again = ("the same command with --resume continues from the last checkpoint" if getattr(args, "resume", None) is False
                     else "the same command continues from what was finished")  # a training refuses its folder without it
            print(f"speechrq: stopped by {signal.Signals(t.signum).name}; nothing half-written was kept: {again}", file=sys.stderr)
        return 128 + t.signum
    except Exception as e:  # a write that no atomic writer saw: a full disk is still one line
        from .io import is_disk_full

        if not is_disk_full(e):
            raise
        where = f" while writing {e.filename}" if getattr(e, "filename", None) else ""
        print(f"speechrq: error{'' if rank is None else f' (rank {rank})'}: no space left on the device{where} "
              f"({os.strerror(e.errno) if getattr(e, 'errno', None) else e}); free space and run the same command again",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``speechrq bench pretrain|quality|latent|sweep|real-speech``: speed and quality benchmarks, studies over seeds and recipes."""

from __future__ import annotations

from ..errors import SpeechrqError
from ..resources import checkpoint_arg, config_arg
from .common import CONFIG_HELP, _holds, int_list


def cmd_bench_pretrain(args) -> None:
    import json

    from ..pretrain.bench import bench_pretrain, format_bench

    import math

    import torch

    if args.steps < 1:
        raise SpeechrqError(f"--steps: must be >= 1, got {args.steps}")
    if args.warmup < 0:
        raise SpeechrqError(f"--warmup: must be >= 0, got {args.warmup}")
    if args.batch_seconds is not None and not (args.batch_seconds > 0 and math.isfinite(args.batch_seconds)):
        raise SpeechrqError(f"--batch-seconds: must be a finite number of seconds > 0, got {args.batch_seconds}")
    for flag, n in (("--num-codebooks", args.num_codebooks), ("--codebook-size", args.codebook_size)):
        if n < 1:
            raise SpeechrqError(f"{flag}: must be >= 1, got {n}")
    if args.layers and not args.latent:
        raise SpeechrqError("--layers: the Latent-RQ target layers, read only with --latent")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SpeechrqError("--device cuda: no CUDA device here (torch.cuda.is_available() is False); use --device cpu or auto")
    result = bench_pretrain(args.preset, steps=args.steps, warmup=args.warmup, batch_seconds=args.batch_seconds,
                            device=args.device, precision=args.precision, num_codebooks=args.num_codebooks,
                            codebook_size=args.codebook_size, latent=args.latent,
                            layers=int_list(args.layers, "--layers") if args.layers else None, gemm_ceiling=args.gemm_ceiling)
    print(json.dumps(result, indent=1) if args.json else format_bench(result))


@_holds(lambda a: a.out, "a quality benchmark")
def cmd_bench_quality(args) -> None:
    from ..evaluate.finetune import FinetuneConfig
    from ..studies.quality import format_quality, quality_benchmark

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


@_holds(lambda a: a.out, "a Latent-RQ study")
def cmd_bench_latent(args) -> None:
    from ..studies.latent_study import latent_study

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
    from ..studies.latent_study import format_study

    print(format_study(report), end="")
    print(f"{args.out}: study.json, study.md")


def _real_speech_out(args) -> str:
    """OUT, once the excerpts folder and the flags are known good (a refused study leaves no trace: no lock, no folder)."""
    from ..studies.real_speech import require_excerpts

    args.excerpts = require_excerpts(args.excerpts)
    args.seeds = int_list(args.seeds, "--seeds")
    if len(args.seeds) < 2:
        raise SpeechrqError(f"--seeds: at least 2 pre-training seeds to measure their spread, got {','.join(map(str, args.seeds))!r}")
    if min(args.steps, args.probe_seeds, args.epochs) < 1:
        raise SpeechrqError("--steps, --probe-seeds, --epochs: each must be >= 1")
    return args.out


@_holds(_real_speech_out, "a real-speech study")
def cmd_bench_real_speech(args) -> None:
    from ..studies.real_speech import format_study, real_speech_study

    report = real_speech_study(args.excerpts, args.out, args.seeds, args.steps, args.synth_corpus, args.probe_seeds,
                               epochs=args.epochs, progress=not args.quiet)
    print(format_study(report), end="")
    print(f"{args.out}: study.json, study.md")


@_holds(lambda a: a.out, "a recipe sweep")
def cmd_bench_sweep(args) -> None:
    from ..studies.sweep import format_sweep, recipe_sweep

    if args.probe_seeds < 2:
        raise SpeechrqError(f"--probe-seeds: at least 2 to measure probe noise, got {args.probe_seeds}")
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    report = recipe_sweep(args.sweep, args.corpus, args.out, seeds=args.probe_seeds, epochs=args.epochs, only=only,
                          progress=not args.quiet)
    print(format_sweep(report), end="")
    print(f"{args.out}: sweep.json, sweep.md")


def add_commands(sub) -> None:
    """``bench``."""
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
    bp.add_argument("--gemm-ceiling", action="store_true", help="also time every matrix product of one step alone and "
                    "print their share of the step and the MFU ceiling: the MFU if nothing but the GEMMs took time")
    bp.add_argument("--json", action="store_true", help="print JSON")
    bp.set_defaults(func=cmd_bench_pretrain)
    bq = bsub.add_parser("quality", help="pre-train for a budget, probe every N steps against random init and filterbanks",
                         description="Pre-train CONFIG for --steps (reusing a finished run), probe every --every steps over "
                         "--probe-seeds seeds beside a random initialisation and the filterbank floor, and report when the "
                         "encoder first beats both beyond probe noise: OUT/quality.json, OUT/quality.png.")
    bq.add_argument("config", metavar="CONFIG", type=config_arg("pretrain"), help=CONFIG_HELP.format(kind="pre-training", example="tiny"))
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
                         "from it (by default every arm: the paper's design, middle layers refreshed at 20/50/80%; middle, ranked-best "
                         "and auto layers with one branch; the paper's schedule on the ranked-best layers; lr continuing; no "
                         "standardisation; --arms picks some) to the same step, optionally continue --reference with Mel and with latent targets, "
                         "probe every final encoder, and tabulate mean ± std over seeds with paired 95% t-intervals over the seeds (Holm's "
                         "rule over the arms): "
                         "OUT/study.json, OUT/study.md. Finished runs and probes are reused.")
    bl.add_argument("--config", default="tiny", type=config_arg("pretrain"), help="the BEST-RQ parent's config (a file or a shipped name)")
    bl.add_argument("--latent-config", default="tiny_latent", type=config_arg("pretrain"), help="the Latent-RQ branches' config (a file or a "
                    "shipped name)")
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
    bl.add_argument("--reference", type=checkpoint_arg, help="a strong checkpoint to continue with Mel and with latent targets")
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
    br = bsub.add_parser("real-speech", help="the tiny recipe pre-trained on real speech against the synthesized hour, probed "
                         "on real speech",
                         description="From the LibriSpeech excerpts (EXCERPTS: utterances.tsv, SPEAKERS.TXT, FLAC), build a "
                         "speaker-identification corpus (10 test-other speakers, 6/2/2 utterances each), a sex corpus (251 "
                         "train-clean-100 readers, split by speaker and stratified by sex, 60/20/20) and a pre-training corpus "
                         "(their train and dev utterances: no test audio); for each pre-training seed pre-train the tiny recipe "
                         "for --steps on it and on --synth-corpus; probe both, a random init per seed and the filterbank on both "
                         "tasks; tabulate mean ± std over seeds with paired 95% t-intervals (Holm's rule per task): OUT/study.json, "
                         "OUT/study.md. Finished runs and probes are reused.")
    br.add_argument("excerpts", nargs="?", metavar="EXCERPTS", help="the LibriSpeech excerpts folder (default: $SPEECHRQ_EXCERPTS, "
                    "else ../shared/data/librispeech-excerpts from the current directory: beside a clone run from its root)")
    br.add_argument("--out", required=True, help="output directory (corpora in OUT/corpora, runs in OUT/seed{s}/{real,synth})")
    br.add_argument("--seeds", default="0,1,2", help="pre-training seeds, at least 2 (default: 0,1,2)")
    br.add_argument("--steps", type=int, default=1000, help="pre-training budget in steps, the same on both corpora (default: 1000)")
    br.add_argument("--synth-corpus", default="exp/demo/corpus", help="the synthesized corpus (default: exp/demo/corpus, made by "
                    "`speechrq synth exp/demo/corpus --hours 1.0 --seed 0`)")
    br.add_argument("--probe-seeds", type=int, default=3, metavar="N", help="probe seeds per encoder (default: 3)")
    br.add_argument("--epochs", type=int, default=30, help="probe epochs (default: 30)")
    br.add_argument("--quiet", action="store_true", help="no progress bars")
    br.set_defaults(func=cmd_bench_real_speech)

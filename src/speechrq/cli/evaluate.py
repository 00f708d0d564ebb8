"""``speechrq evaluate``: SUPERB-style probes and fine-tuning of frozen encoders."""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError
from ..resources import checkpoint_arg
from .common import MIN_AUDIO_HELP, _holds


@_holds(lambda a: a.out, "an evaluation")
def cmd_evaluate(args) -> None:
    from ..encoders import is_pretrained_folder, load_encoder
    from ..evaluate.baselines import INIT_SEEDS, RANDOM_PRESET, check_random_init, make_baselines
    from ..evaluate.run import evaluate, format_table, model_name, resolve_checkpoints
    from ..evaluate.finetune import FinetuneConfig
    from ..evaluate.splits import DEFAULT_FOLD, leave_one_out, parse_splits
    from ..pretrain.stages import branch_parent

    if args.every is not None and args.every < 1:
        raise SpeechrqError(f"--every: must be >= 1, got {args.every}")
    for d in args.reuse_probes or ():
        if not d:
            raise SpeechrqError("--reuse-probes: an empty path; give another evaluation's --out folder")
        if not Path(d).exists():
            raise SpeechrqError(f"--reuse-probes {d}: no such folder")
        if not Path(d).is_dir():
            raise SpeechrqError(f"--reuse-probes {d}: a file, not a folder; give another evaluation's --out folder")
        if Path(d).resolve() == Path(args.out).resolve():
            raise SpeechrqError(f"--reuse-probes {d}: is --out itself (its finished probes are always read); give another "
                                "evaluation's folder")
        if not (Path(d) / "probes").is_dir():
            raise SpeechrqError(f"--reuse-probes {d}: not an evaluation's output folder (it has no probes/ folder)")
    from ..evaluate.probes import TASKS

    if not [x for x in args.tasks.split(",") if x.strip()]:  # before any encoder runs
        raise SpeechrqError(f"--tasks: names no task; give one or more of {', '.join(TASKS)}")
    for flag, value in (("--epochs", args.epochs), ("--probe-seeds", args.probe_seeds)):
        if value is not None and value < 1:
            raise SpeechrqError(f"{flag}: must be >= 1, got {value}")
    if not args.random_baseline and (given := [f for f, v in (("--random-preset", args.random_preset),
                                                              ("--random-init-seeds", args.random_init_seeds)) if v is not None]):
        raise SpeechrqError(f"{' / '.join(given)}: set the random-init baseline, so give --random-baseline too")
    random_preset = (RANDOM_PRESET if args.random_preset is None else args.random_preset) if args.random_baseline else None
    init_seeds = INIT_SEEDS if args.random_init_seeds is None else args.random_init_seeds
    if random_preset is not None:
        check_random_init(random_preset, init_seeds)  # before any checkpoint is read or branch trained
    if args.layer_sets:
        from ..studies.layer_study import layer_study, parse_layer_sets

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
    if args.compile:
        import torch

        from ..encoders import compile_frozen

        compiled = [name for name, enc in encoders.items() if compile_frozen(enc, "cuda" if torch.cuda.is_available() else "cpu")]
        eager = [name for name in encoders if name not in compiled]
        print(f"--compile: the encoder blocks of {', '.join(compiled) or 'no encoder'} compiled (their hidden states and probes "
              "are kept apart from eager ones)" + (f"; {', '.join(eager)} {'stays' if len(eager) == 1 else 'stay'} eager (not "
                                                   "speechrq encoders)" if eager else ""))
    from .. import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (states and probes are shared)
        results = evaluate(encoders, args.corpus, tasks, args.out, lrs, args.epochs, progress=not args.quiet, steps=steps,
                           target_analysis=not args.no_target_analysis, tsne=not args.no_tsne, preset=args.probe_preset, parents=parents, seeds=args.probe_seeds,
                           folds=folds, finetune=ft, probe_jobs=args.probe_jobs, cache_max_gb=args.cache_max_gb, ctx=ctx,
                           groups=groups, baselines=rule, reuse=args.reuse_probes or ())
    if results is None:  # not rank 0
        return
    print(format_table(results), end="")
    written = ["results.json", "results.md"]
    written += [f for f in ("layer_weights.png", "curves.png", "target_tsne_phones.png", "target_tsne_speakers.png") if (Path(args.out) / f).exists()]
    print(f"{args.out}: {', '.join(written)}")
    if args.compile:
        from ..models.compiling import report_graphs

        report_graphs(args.out)


def add_commands(sub) -> None:
    """``evaluate``."""
    from ..evaluate.baselines import INIT_SEEDS, RANDOM_PRESET
    from ..evaluate.splits import DEV_SHARE

    ev = sub.add_parser("evaluate", help="SUPERB-style probes (ASR, SID, IC, ER, PR) and fine-tuning (FT) of encoders",
                        description="Probe each checkpoint's frozen encoder on a corpus: hidden states are computed once "
                        "and cached (float16), probes train with an lr sweep and dev-set selection. " + MIN_AUDIO_HELP)
    ev.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", type=checkpoint_arg, help="speechrq checkpoints (RUN/checkpoints/step_N, or tiny_bestrq, the shipped reference), run "
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
                    "--ft-minutes of labelled audio: PER with phone alignments, else CER), lid (language identification; needs two "
                    "languages or more) and sex (the speaker's sex, supervision.gender: `data import librispeech` sets it from "
                    "SPEAKERS.TXT); on a corpus of several languages every probe is also scored per language "
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
    ev.add_argument("--no-tsne", action="store_true", help="compute the target separability numbers but not their t-SNE "
                    "figures (the analysis's slowest part: about 5 s per source and view on one core); figures an earlier "
                    "run left in OUT are removed")
    ev.add_argument("--probe-jobs", type=int, metavar="N", help="train N probes side by side, one process each, sharing the "
                    "cores (default: one per core on a CPU, at most 8; one on a GPU); fewer when their hidden states would not fit "
                    "in half the available memory")
    ev.add_argument("--cache-max-gb", type=float, metavar="GB", help="disk budget for the cached hidden states of all encoders "
                    "(decimal GB; default: 80%% of the free space where they are kept). What the probes read is estimated first "
                    "and printed; utterance means are cached before frames, and what does not fit is recomputed whenever a probe "
                    "reads it, with the same results. 0 caches nothing (s3prl's way)")
    ev.add_argument("--compile", action="store_true", help="the hidden-state pass through torch.compile'd encoder blocks "
                    "(speechrq encoders; lengths padded to 32 frames; off by default: slower on a small CPU, see the "
                    "benchmarks page); states and probes are kept apart from eager ones")
    ev.add_argument("--reuse-probes", action="append", metavar="DIR", help="another evaluation's --out folder: its finished "
                    "probes of the same encoders, settings and corpus content are copied into --out, seed by seed, not trained "
                    "again (repeatable)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)

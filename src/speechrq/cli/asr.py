"""``speechrq asr train|compare|tables|transcribe`` (``asr decode`` is :mod:`speechrq.cli.asr_decode`'s)."""

from __future__ import annotations

from ..errors import SpeechrqError
from .asr_decode import add_decode_command, add_decode_flags, decode_settings
from ..resources import checkpoint_arg, config_arg
from .common import CONFIG_HELP, ENCODER_HELP, FRAME_MS_HELP, LAYER_HELP, MIN_AUDIO_HELP, _holds, int_list, train_holding


def cmd_asr_train(args) -> None:
    from ..asr.config import ASRConfig
    from ..asr.trainer import train_asr
    from ..config import load_config

    cfg = load_config(ASRConfig, args.config, list(args.set or []))
    main_rank, last = train_holding(cfg.out_dir, "an ASR training run", lambda progress: train_asr(cfg, args.resume, progress),
                                    quiet=args.quiet)
    if main_rank:
        print(f"{cfg.out_dir}: trained to step {cfg.optim.max_steps}; last checkpoint {last}")


@_holds(lambda a: a.out, "an ASR comparison")
def cmd_asr_compare(args) -> None:
    from ..data.corpus import default_split
    from ..studies.discrete_asr import compare, format_compare, parse_ms, parse_rpq

    mode, beam, w = decode_settings(args)
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
    from ..studies.rpq_tables import format_tables, write_tables

    t = write_tables(args.comparisons, args.prefix, args.logs)
    print(format_tables(t), end="")
    figure = f", {args.prefix}_figure6.png" if t.get("figure6") else ""  # Figure 6 only where every run trained alone
    print(f"{args.prefix}.json, {args.prefix}.md{figure}, {args.prefix}_errors.json.gz")


def cmd_asr_transcribe(args) -> None:
    from ..asr.decode import Recognizer, read_audio

    mode, beam, w = decode_settings(args)
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


def add_commands(sub) -> None:
    """``asr``."""
    a = sub.add_parser("asr", help="discrete-unit ASR: E-Branchformer, hybrid CTC/attention, joint beam search",
                       description="ASR from discrete units (or the same layer's continuous features): train, decode test "
                       "sets, transcribe audio files.")
    asub = a.add_subparsers(dest="asr_command", required=True, metavar="SUBCOMMAND")
    at = asub.add_parser("train", help="train on a `speechrq units encode` directory",
                         description="Train as the YAML config says (a file, or a shipped config by name: speechrq configs list). For several GPUs: "
                         "torchrun --nproc-per-node G -m speechrq asr train CONFIG.")
    at.add_argument("config", metavar="CONFIG", type=config_arg("asr"), help=CONFIG_HELP.format(kind="asr", example="tiny"))
    at.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable; the same key twice: the later wins)")
    at.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    at.add_argument("--quiet", action="store_true", help="no progress bar")
    at.set_defaults(func=cmd_asr_train)
    add_decode_command(asub)
    ac = asub.add_parser("compare", help="Table II: continuous vs k-means vs PQ vs RPQ units, one ASR model each",
                         description="Fit k-means, PQ (each M of --pq) and RPQ (each M of --rpq) on one layer, encode the corpus, "
                         "train CONFIG's ASR model on each and on the continuous features, decode the test split: "
                         "OUT/compare.json, OUT/compare.md (CER, WER, time per epoch where every run trained alone, input bits/s). Resumable.")
    ac.add_argument("config", metavar="CONFIG", type=config_arg("asr"), help="ASR YAML config or a shipped config's name, e.g. tiny "
                    "(data.units, data.input and out_dir are set per system)")
    ac.add_argument("--encoder", required=True, type=checkpoint_arg, help=ENCODER_HELP)
    ac.add_argument("--layer", type=int, required=True, help=LAYER_HELP)
    ac.add_argument("--frame-ms", type=int, metavar="MS", help=FRAME_MS_HELP)
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
                    "the cores (for a CPU; default: 1); runs trained side by side record no time (timings_removed says why)")
    ac.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of CONFIG for every system (repeatable; the same key twice: the later wins)")
    add_decode_flags(ac)
    ac.set_defaults(func=cmd_asr_compare)
    atb = asub.add_parser("tables", help="the RPQ paper's Tables I-IV, VII and Figure 6 from finished comparisons",
                          description="Lay out finished `asr compare` outputs as the RPQ paper's tables: k-means by k (one "
                          "comparison per k), PQ and RPQ by M against the paper's baseline and raw k-means, RVQ beside them, RPQ "
                          "by alpha (the best alpha chosen on dev), the learning-rate peak in epochs, time per epoch where each run trained "
                          "alone (--jobs 1); every difference "
                          "with a t-interval over seeds and test utterances, verdicts after Holm's rule within each table: "
                          "PREFIX.json, PREFIX.md, PREFIX_errors.json.gz (the per-utterance errors) and, when timed, PREFIX_figure6.png.")
    atb.add_argument("comparisons", nargs="+", metavar="OUT", help="`asr compare` output directories")
    atb.add_argument("--prefix", required=True, help="output path without suffix (e.g. docs/rpq_tables)")
    atb.add_argument("--logs", metavar="DIR", help="also copy every run's training log there, gzipped (to ship beside the tables)")
    atb.set_defaults(func=cmd_asr_tables)
    tr = asub.add_parser("transcribe", help="audio files to text: encoder, units, ASR model, search, in one call",
                         description="Transcribe sound files (any rate, resampled to 16 kHz): one line per file, PATH<TAB>TEXT. "
                         + MIN_AUDIO_HELP)
    tr.add_argument("checkpoint", metavar="CHECKPOINT", help="an ASR checkpoint or run directory")
    tr.add_argument("audio", metavar="AUDIO", nargs="+", help="sound files")
    add_decode_flags(tr)
    tr.set_defaults(func=cmd_asr_transcribe)

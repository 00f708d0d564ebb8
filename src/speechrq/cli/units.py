"""``speechrq units fit|encode|report``: discrete units from one encoder layer."""

from __future__ import annotations

from ..errors import SpeechrqError
from ..resources import checkpoint_arg
from .common import ENCODER_HELP, FRAME_MS_HELP, LAYER_HELP, MIN_AUDIO_HELP, _holds, float_list, int_list


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
    from ..units import QuantizerSpec
    from ..units.run import fit_units, format_fit

    frames, fraction = _sample_size(args)
    if args.kind == "kmeans" and args.M not in (None, 1):
        raise SpeechrqError(f"--M {args.M}: k-means has one stream; --M sets the streams of rvq, pq and rpq")
    spec = QuantizerSpec(kind=args.kind, k=args.k, num_subspaces=1 if args.kind == "kmeans" else (args.M or 8), alpha=args.alpha,
                         seed=args.seed, niter=args.niter, max_points_per_centroid=args.max_points_per_centroid, normalize=args.normalize)
    from .. import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (the sample's pass is shared)
        q = fit_units(args.encoder, args.layer, args.corpus, args.out, spec, frames=frames, fraction=fraction, split=args.split,
                      max_duration=args.max_duration, progress=not args.quiet, frame_ms=args.frame_ms, ctx=ctx)
    if q is None:  # not rank 0
        return
    print(format_fit(q), end="")
    print(f"{args.out}: units.json, units.safetensors")


@_holds(lambda a: a.out, "an encoded corpus")
def cmd_units_encode(args) -> None:
    from ..units.run import encode_units, format_lengths

    if args.bpe is not None and args.bpe < 2:
        raise SpeechrqError(f"--bpe: a vocabulary size >= 2, got {args.bpe}")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits is not None else None  # None: every split
    if splits == []:
        raise SpeechrqError(f"--splits {args.splits!r}: names no split (leave it out for every split of the corpus)")
    from .. import distributed

    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (each split's pass is shared)
        summary = encode_units(args.quantizer, args.corpus, splits, args.out, bpe=args.bpe, max_duration=args.max_duration,
                               progress=not args.quiet, ctx=ctx, compile=args.compile)
    if not summary:  # not rank 0
        return
    for s in summary["splits"].values():
        per = f" per process, {s['processes']} processes" if s.get("processes", 1) > 1 else ""
        rate = f"; encoded {s['encoded_frames']} frames at {s['frames_per_s']:.0f} frames/s{per}" if s["frames_per_s"] else ""
        print(f"{s['manifest']}: {s['utterances']} utterances{rate}")
    if "bpe" in summary:
        print(format_lengths(summary["bpe"]), end="")
    print(f"{args.out}: encode.json")
    if args.compile:
        from ..models.compiling import report_graphs

        report_graphs(args.out)


@_holds(lambda a: a.out, "a units report")
def cmd_units_report(args) -> None:
    from ..units.report import format_report, grid
    from ..units.run import report_units

    frames, fraction = _sample_size(args)
    if fraction is not None:
        raise SpeechrqError("--fraction: the report takes --frames (a fixed training sample)")
    ms = int_list(args.M, "--M")
    if not ms or min(ms) < 1:
        raise SpeechrqError(f"--M: {args.M!r}: positive integers")
    alphas = float_list(args.alphas, "--alphas")
    if not alphas or not all(0 < a <= 1 for a in alphas):
        raise SpeechrqError(f"--alphas: {args.alphas!r}: numbers in (0, 1]")
    points = grid([x.strip() for x in args.kinds.split(",") if x.strip()], ms, alphas)
    report = report_units(args.encoder, args.layer, args.corpus, args.out, args.k, points, frames, eval_split=args.eval_split,
                          eval_frames=args.eval_frames, seed=args.seed, niter=args.niter, normalize=args.normalize,
                          train_split=args.split, progress=not args.quiet, frame_ms=args.frame_ms)
    print(format_report(report["rows"]), end="")
    print(f"{args.out}: report.json, report.md, report.png")


def _encoder_args(q) -> None:
    """The flags naming the layer and the training sample (``fit`` and ``report``)."""
    q.add_argument("--encoder", required=True, type=checkpoint_arg, help=ENCODER_HELP)
    q.add_argument("--layer", type=int, required=True, help=LAYER_HELP)
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
    q.add_argument("--frame-ms", type=int, metavar="MS", help=FRAME_MS_HELP)


def add_commands(sub) -> None:
    """``units``."""
    u = sub.add_parser("units", help="discrete units from an encoder layer: k-means, RVQ, PQ, RPQ",
                       description="Discrete units from one layer of a speechrq checkpoint or a local Hugging Face "
                       "WavLM/HuBERT/wav2vec2/data2vec-audio folder. Layer -1 is the front end (Hugging Face's hidden_states[0]), "
                       "k block k's output (hidden_states[k + 1]).")
    usub = u.add_subparsers(dest="units_command", required=True, metavar="SUBCOMMAND")

    uf = usub.add_parser("fit", help="sample a layer's frames and fit a quantizer",
                         description="Stream a seeded sample of the layer's frames (float16 shards, bounded memory) into "
                         "OUT/sample and fit a quantizer on it (faiss k-means per sub-space): OUT/units.json, OUT/units.safetensors. "
                         + MIN_AUDIO_HELP)
    _encoder_args(uf)
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
    ue.add_argument("--compile", action="store_true", help="the encoder pass through torch.compile'd encoder blocks (a speechrq "
                    "checkpoint; lengths padded to 32 frames; off by default: slower on a small CPU); its units are kept apart from eager ones")
    ue.add_argument("--quiet", action="store_true", help="no progress bars")
    ue.set_defaults(func=cmd_units_encode)
    ur = usub.add_parser("report", help="k-means, PQ and RPQ over a grid of M and alpha, beside the paper's theory",
                         description="Fit every quantizer of the grid on one training sample, measure on held-out frames: "
                         "reconstruction error, codebook usage and entropy, bits per second, compression, phone purity and PNMI, "
                         "and RPQ's error ratio against eqs. 13 and 17: OUT/report.json, OUT/report.md, OUT/report.png. "
                         + MIN_AUDIO_HELP)
    _encoder_args(ur)
    ur.add_argument("--out", required=True, help="output directory")
    ur.add_argument("--k", type=int, default=2000, help="centroids per codebook (default: 2000)")
    ur.add_argument("--kinds", default="kmeans,pq,rpq", help="comma-separated kinds (default: kmeans,pq,rpq; rvq too)")
    ur.add_argument("--M", default="2,4,8,16,32", help="stream counts for PQ, RPQ and RVQ (default: 2,4,8,16,32)")
    ur.add_argument("--alphas", default="0.0625,0.125,0.25,0.5,1", help="RPQ dimension shares (default: 0.0625,0.125,0.25,0.5,1)")
    ur.add_argument("--eval-split", help="held-out split measured (default: the corpus's dev split: dev, or its one dev*/valid* "
                    "split)")
    ur.add_argument("--eval-frames", type=int, default=20000, help="held-out frames measured (default: 20000)")
    ur.set_defaults(func=cmd_units_report)

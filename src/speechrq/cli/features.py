"""``speechrq features stats``: the global log-Mel statistics of a corpus split."""

from __future__ import annotations

from pathlib import Path

from .common import _holds


def _stats_file(args) -> str:
    return args.out or str(Path(args.corpus_dir) / "feature_stats.json")


@_holds(_stats_file, "feature statistics")
def cmd_features_stats(args) -> None:
    from ..data.corpus import load_cuts
    from ..features import STATS_FILE, FeatureStats, check_stats_source, compute_stats
    from ..identity import corpus_fingerprint

    from ..data.corpus import default_split

    out = Path(args.out) if args.out else Path(args.corpus_dir) / STATS_FILE
    args.split = args.split or default_split(args.corpus_dir, "train")  # the corpus's own training split
    source = {"corpus": corpus_fingerprint(args.corpus_dir, args.split), "split": args.split, "seed": args.seed,
              "max_utterances": args.max_utterances}
    from .. import distributed

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


def add_commands(sub) -> None:
    """``features``."""
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

"""``speechrq targets rank``: Mel and every layer of a checkpoint, ranked by the quality of their targets."""

from __future__ import annotations

from ..errors import SpeechrqError
from ..resources import checkpoint_arg
from .common import _holds


@_holds(lambda a: a.out, "a target ranking")
def cmd_targets_rank(args) -> None:
    from ..evaluate.target_quality import format_ranking, rank_checkpoint
    from ..io import atomic_write_json

    if args.per_speaker < 2:
        raise SpeechrqError(f"--per-speaker: at least 2 utterances per speaker, got {args.per_speaker}")
    if args.sigma <= 0:
        raise SpeechrqError(f"--sigma: must be > 0, got {args.sigma}")
    from ..data.corpus import default_split

    report = rank_checkpoint(args.checkpoint, args.corpus, args.split or default_split(args.corpus, "dev"), args.per_speaker, num_codebooks=args.num_codebooks, sigma=args.sigma)
    print(format_ranking(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"{args.out}: written")


def add_commands(sub) -> None:
    """``targets``."""
    tg = sub.add_parser("targets", help="target sources: rank Mel and a checkpoint's layers", description="Target sources.")
    tsub = tg.add_subparsers(dest="targets_command", required=True, metavar="SUBCOMMAND")
    tk = tsub.add_parser("rank", help="rank Mel and every layer of a checkpoint by the quality of the targets each would give",
                         description="Project Mel and every layer (front end -1, blocks 0..L-1) of CHECKPOINT by the same number "
                         "of codebooks and score the targets: phone 5-NN accuracy of phone segments (when the corpus has "
                         "alignments), speaker 5-NN accuracy of utterance means, and the label-free perturbation agreement "
                         "(kappa of the targets of clean and noisy log-Mel), with its Spearman correlation to the labelled ones.")
    tk.add_argument("checkpoint", metavar="CHECKPOINT", type=checkpoint_arg, help="a speechrq pre-training checkpoint (or tiny_bestrq, the shipped reference)")
    tk.add_argument("--corpus", required=True, help="corpus directory")
    tk.add_argument("--split", help="split to measure on (default: the corpus's dev split: dev, or its one dev*/valid* split)")
    tk.add_argument("--per-speaker", type=int, default=20, metavar="N", help="utterances per speaker (default: 20)")
    tk.add_argument("--num-codebooks", type=int, default=None, metavar="N", help="codebooks per source (default: the checkpoint's)")
    tk.add_argument("--sigma", type=float, default=0.5, help="perturbation std in normalised log-Mel units (default: 0.5)")
    tk.add_argument("--out", help="write the ranking as JSON here")
    tk.set_defaults(func=cmd_targets_rank)

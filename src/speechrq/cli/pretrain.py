"""``speechrq pretrain`` and ``speechrq export``: a pre-training run, and the small copy of one of its checkpoints."""

from __future__ import annotations

from ..resources import checkpoint_arg, config_arg
from .common import CONFIG_HELP, _holds, train_holding


def cmd_pretrain(args) -> None:
    from ..config import load_config
    from ..pretrain.config import PretrainConfig
    from ..pretrain.trainer import train

    overrides = list(args.set or [])
    if args.init_from:
        overrides.append(f"targets.init_from={args.init_from}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    main_rank, last = train_holding(cfg.out_dir, "a pre-training run", lambda progress: train(cfg, args.resume, progress),
                                    quiet=args.quiet)
    if main_rank:
        from ..pretrain.meters import format_run_summary

        print(format_run_summary(cfg))
        print(f"{cfg.out_dir}: trained to step {cfg.optim.max_steps}; last checkpoint {last}")


@_holds(lambda a: a.out, "an exported checkpoint")
def cmd_export(args) -> None:
    from ..checkpoint import MODEL_FILE, export_checkpoint
    from ..io import file_sha256

    out = export_checkpoint(args.checkpoint, args.out)
    size = (out / MODEL_FILE).stat().st_size
    print(f"{out}: {MODEL_FILE} {size / 1e6:.1f} MB, sha256 {file_sha256(out / MODEL_FILE)} (no heads, no trainer state)")


def add_commands(sub) -> None:
    """``pretrain`` and ``export``."""
    pt = sub.add_parser("pretrain", help="BEST-RQ masked-prediction pre-training (one process, or many with torchrun)",
                        description="Pre-train an encoder as the YAML config says (a file, or a shipped config by name: speechrq configs list). "
                        "For several GPUs or nodes: torchrun --nproc-per-node G -m speechrq pretrain CONFIG.")
    pt.add_argument("config", metavar="CONFIG", type=config_arg("pretrain"), help=CONFIG_HELP.format(kind="pre-training", example="tiny"))
    pt.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. --set optim.lr=3e-4 (repeatable; the same key twice: the later wins)")
    pt.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    pt.add_argument("--init-from", metavar="CHECKPOINT", type=checkpoint_arg, help="branch a Latent-RQ stage from another run's checkpoint "
                    "(RUN/checkpoints/step_N): the student starts from it, the target encoder is its encoder, "
                    "steps continue from N (same as --set targets.init_from=CHECKPOINT)")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(func=cmd_pretrain)

    ex = sub.add_parser("export", help="a small copy of a checkpoint for frozen-encoder use (evaluation, units, branches)",
                        description="Copy a checkpoint's encoder, feature statistics and quantizers (and θ) to OUT, without "
                        "the prediction heads and the optimizer state: what evaluate, target analyses and a Latent-RQ branch "
                        "(--init-from) read. It cannot resume its run.")
    ex.add_argument("checkpoint", metavar="CHECKPOINT", type=checkpoint_arg, help="RUN/checkpoints/step_N (or tiny_bestrq)")
    ex.add_argument("out", metavar="OUT", help="directory to write (e.g. OUT_RUN/checkpoints/step_N)")
    ex.set_defaults(func=cmd_export)

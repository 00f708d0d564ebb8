"""``speechrq configs list|show|copy``: the configs and the reference checkpoint that ship with the package."""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError


def cmd_configs_list(args) -> None:
    from ..resources import CONFIG_KINDS, REFERENCE, config_names, config_path, describe, reference_checkpoint

    for kind in CONFIG_KINDS:
        print(f"{kind} configs (speechrq {'pretrain' if kind == 'pretrain' else 'asr train'} NAME):")
        names = config_names(kind)
        width = max(map(len, names))
        for name in names:
            print(f"  {name:<{width}}  {describe(config_path(kind, name))}")
    print(f"reference checkpoint (wherever a speechrq checkpoint is named, e.g. --encoder {REFERENCE}):")
    print(f"  {REFERENCE}  the tiny BEST-RQ encoder after 4000 steps on the demo corpus ({reference_checkpoint()})")


def _find(kind: str | None, name: str) -> tuple[str, Path]:
    from ..resources import CONFIG_KINDS, config_names, config_path

    given = name
    name = name[:-5] if name.endswith(".yaml") else name
    if "/" in name and kind is None:  # pretrain/tiny
        kind, name = name.split("/", 1)
        if kind not in CONFIG_KINDS:
            raise SpeechrqError(f"{given!r}: {kind!r} is not a config kind (choose {', '.join(CONFIG_KINDS)}, as in pretrain/tiny)")
    if not name or not name.replace("_", "").replace("-", "").isalnum():  # a name, never a path (.., /)
        shipped = "; ".join(f"{k}: {', '.join(config_names(k))}" for k in CONFIG_KINDS)
        raise SpeechrqError(f"{given!r}: not a shipped config's name ({shipped})")
    kinds = [kind] if kind else [k for k in CONFIG_KINDS if name in config_names(k)]
    if not kinds:
        shipped = "; ".join(f"{k}: {', '.join(config_names(k))}" for k in CONFIG_KINDS)
        raise SpeechrqError(f"{name}: not a shipped config ({shipped})")
    if len(kinds) > 1:  # `tiny` is a pre-training and an ASR config
        raise SpeechrqError(f"{name}: both a pre-training and an ASR config; say which: pretrain/{name} or asr/{name}")
    return kinds[0], config_path(kinds[0], name)


def cmd_configs_show(args) -> None:
    print(_find(None, args.name)[1].read_text(encoding="utf-8"), end="")


def cmd_configs_copy(args) -> None:
    from ..io import atomic_write_text

    kind, src = _find(None, args.name)
    if args.dest is not None and not args.dest.strip():
        raise SpeechrqError("DEST: empty; name a file or folder (or leave DEST out for NAME.yaml here)")
    dest = Path(args.dest) if args.dest else Path(src.name)
    if dest.is_dir() or (args.dest or "").endswith("/"):  # a folder, existing or asked for with a trailing slash
        if not dest.is_dir():
            raise SpeechrqError(f"{args.dest}: no such folder")
        dest = dest / src.name
    if dest.exists() and not args.force:
        raise SpeechrqError(f"{dest}: already exists; choose another DEST or add --force to overwrite it")
    if dest.exists() and not dest.is_file():
        raise SpeechrqError(f"{dest}: not a regular file; choose another DEST")
    try:
        atomic_write_text(dest, src.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpeechrqError(f"{dest}: cannot write ({e.strerror or e})") from None
    print(f"{dest}: the shipped {kind} config {src.stem}; edit it and run: speechrq "
          f"{'pretrain' if kind == 'pretrain' else 'asr train'} {dest}")


def add_commands(sub) -> None:
    """``configs``."""
    c = sub.add_parser("configs", help="list, print or copy the shipped configs and reference checkpoint",
                       description="The configs and the reference checkpoint that ship with speechrq. Wherever a command "
                       "takes a config file, a shipped config's name works too (speechrq pretrain tiny); wherever it takes "
                       "a speechrq checkpoint, tiny_bestrq names the reference. A path that exists wins over a name.")
    csub = c.add_subparsers(dest="configs_command", required=True, metavar="SUBCOMMAND")
    ls = csub.add_parser("list", help="the shipped configs, each with its one-line description", description="List the shipped "
                         "configs and the reference checkpoint.")
    ls.set_defaults(func=cmd_configs_list)
    for verb, helptext in (("show", "print a shipped config"), ("copy", "copy a shipped config to edit it")):
        p = csub.add_parser(verb, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("name", metavar="NAME", help="a shipped config's name (speechrq configs list), KIND/NAME where a name "
                       "is both a pre-training and an ASR config (pretrain/tiny)")
        if verb == "copy":
            p.add_argument("dest", metavar="DEST", nargs="?", help="a file or folder to write (default: NAME.yaml here)")
            p.add_argument("--force", action="store_true", help="overwrite DEST if it exists")
        p.set_defaults(func=cmd_configs_show if verb == "show" else cmd_configs_copy)

"""``speechrq asr decode``: test sets to hypotheses, CER and WER; the search flags every decoding command shares."""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError
from .common import MIN_AUDIO_HELP


def add_decode_flags(q) -> None:
    """The search: ``asr decode``, ``asr compare`` and ``asr transcribe``."""
    q.add_argument("--mode", default="joint", choices=["joint", "attention", "ctc"],
                   help="joint CTC/attention beam search, attention beam search (greedy with --beam 1), or greedy CTC")
    q.add_argument("--beam", type=int, default=10, help="beam size (default: 10, the paper's)")
    q.add_argument("--ctc-weight", type=float, default=0.3, help="CTC weight of the joint score (default: 0.3)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def decode_settings(args) -> tuple[str, int, float]:
    """The search flags, checked: (mode, beam, CTC weight)."""
    if args.beam < 1:
        raise SpeechrqError(f"--beam: must be >= 1, got {args.beam}")
    if not 0 <= args.ctc_weight <= 1:
        raise SpeechrqError(f"--ctc-weight: must be in [0, 1], got {args.ctc_weight}")
    return args.mode, args.beam, args.ctc_weight


def cmd_asr_decode(args) -> None:
    from .. import distributed

    mode, beam, w = decode_settings(args)
    with distributed.corpus_pass() as ctx:  # one process, or a rank of torchrun's (each split's batches are shared)
        _asr_decode(args, mode, beam, w, ctx)


def _asr_decode(args, mode: str, beam: int, w: float, ctx) -> None:
    from ..asr.decode import Recognizer

    rec = Recognizer(args.checkpoint, device=str(ctx.device) if ctx.distributed else None)
    data = rec.data(args.units)  # its own units, or --units of the same quantizer (one line if another's)
    # the default folder names everything that changes the hypotheses: a decode with other settings never replaces one
    units_tag = "" if not args.units else f"_units{data.source.fingerprint[:8]}"
    out = Path(args.out) if args.out else rec.path.parent.parent / "decode" / f"{rec.path.name}_{mode}_beam{beam}_ctc{w:g}{units_tag}"
    from ..lock import hold

    with hold(out, "decodes"):
        _decode_into(args, rec, data, out, mode, beam, w, ctx)


def _decode_into(args, rec, data, out: Path, mode: str, beam: int, w: float, ctx) -> None:
    from ..asr.decode import decode_split
    from ..data.corpus import text_id
    from ..io import atomic_write_json, atomic_write_text, file_fingerprint

    # splits decoded earlier into OUT with the same model, units and settings are kept beside the new ones; OUT holding
    # decodes of anything else is refused, never mixed
    from ..checkpoint import MODEL_FILE
    from ..identity import describe_difference
    from ..io import read_json

    from ..asr.search import SEARCH_VERSION

    made = {"model": file_fingerprint(rec.path / MODEL_FILE), "units_fingerprint": data.source.fingerprint, "mode": mode, "beam": beam,
            "ctc_weight": w, "search": SEARCH_VERSION}
    def previous_rows() -> dict:
        from ..schema import OBJECT, Each, check, opt

        previous = (check(read_json(out / "results.json"), {opt("splits"): Each(OBJECT)}, out / "results.json")
                    if (out / "results.json").exists() else {})
        if previous and "search" not in previous:
            raise SpeechrqError(f"{out}: holds a results.json that `asr decode` did not write; use another --out")
        if previous and (why := describe_difference({k: previous.get(k) for k in made}, made)):
            raise SpeechrqError(f"{out}: holds decodes made otherwise ({why}); use another --out or delete it")
        return dict(previous.get("splits", {}))

    from ..distributed import on_main

    rows = on_main(previous_rows, ctx)
    from ..data.corpus import default_split

    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else [default_split(data.source.dir, "test")]
    for split in splits:
        r = decode_split(rec, data.cuts(split), mode, beam, w, progress=not args.quiet, ctx=ctx)
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
        atomic_write_json(out / "results.json", {"checkpoint": str(rec.path), "units": str(data.source.dir), **made, "splits": rows})
        print(f"{out}: results.json, hyp_*.txt")


def add_decode_command(asub) -> None:
    """``asr decode``."""
    ad = asub.add_parser("decode", help="test sets to hypotheses, CER and WER",
                         description="Decode splits of the units directory the model was trained on (or --units): "
                         "OUT/hyp_SPLIT.txt and OUT/results.json. " + MIN_AUDIO_HELP)
    ad.add_argument("checkpoint", metavar="CHECKPOINT", help="an ASR checkpoint or run directory (its newest checkpoint)")
    ad.add_argument("--splits", help="comma-separated splits (default: the units folder's test split: test, or its one test* "
                    "split)")
    ad.add_argument("--units", help="a units directory encoded by the same quantizer (default: the training one)")
    ad.add_argument("--out", help="output directory (default: RUN/decode/step_N_MODE_beamB_ctcW, with _unitsFINGERPRINT "
                    "appended when --units is given)")
    add_decode_flags(ad)
    ad.set_defaults(func=cmd_asr_decode)

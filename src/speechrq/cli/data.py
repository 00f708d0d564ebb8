"""``speechrq synth`` and ``speechrq data import|summary``: corpora made or imported, and their counts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import SpeechrqError
from .common import _holds


def _cpu_count() -> int:
    """This process's cores: the default of --workers (shown as "all cores" on the reference page, which must not depend on
    the machine that renders it: ``doc_default``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@_holds(lambda a: a.out_dir, "a corpus")
def cmd_synth(args) -> None:
    from ..data.corpus import format_summary
    from ..data.synth import COMMAND_SHARE, SynthConfig, synthesize_corpus

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


@_holds(lambda a: a.out, "an imported corpus")
def cmd_data_import(args) -> None:
    from ..data.corpus import format_summary
    from ..data.recipes import import_corpus

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
    from ..data.corpus import format_summary, summarize

    print(format_summary(summarize(args.corpus_dir), title=f"corpus {args.corpus_dir}"))


def add_commands(sub) -> None:
    """``synth`` and ``data``."""
    from ..data.synth import COMMAND_SHARE

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
    s.add_argument("--workers", type=int, default=_cpu_count(), help="parallel processes (default: all cores)").doc_default = "all cores"
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    d = sub.add_parser("data", help="import and inspect corpora", description="Import and inspect corpora.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    from ..data.recipes import RECIPES

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
    i.add_argument("--workers", type=int, default=_cpu_count(), help="parallel audio checks (default: all cores)").doc_default = "all cores"
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.add_argument("--allow-overlap", action="store_true",
                   help="import a recording that is in a training split and a dev/test split, or in two held-out splits "
                        "(same id or same audio bytes; refused by default); counted in OUT/import_report.json either way")
    i.set_defaults(func=cmd_data_import)
    sm = dsub.add_parser("summary", help="print a corpus directory's counts", description="Print a corpus directory's counts.")
    sm.add_argument("corpus_dir", metavar="CORPUS_DIR")
    sm.set_defaults(func=cmd_data_summary)

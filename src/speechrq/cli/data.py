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


def _print_import(kind: str, out, summary: dict, report) -> None:
    """What ``data import`` prints (and ``data download --import``): the summary, the audio report, and a warning for
    empty transcripts and for overlapping splits."""
    from ..data.corpus import format_summary

    print(format_summary(summary, title=f"{kind} corpus {out}"))
    print(report.format())
    empty = summary.get("empty_transcripts") or {}
    if empty.get("count"):
        n = empty["count"]
        print(f"warning: {n} transcript{' is' if n == 1 else 's are'} empty once normalised (e.g. {', '.join(empty['examples'])}); kept in the "
              f"corpus, all listed under empty_transcripts in {Path(out) / 'import_report.json'}", file=sys.stderr)
    if (n := (summary.get("overlap") or {}).get("count")):
        first = summary["overlap"]["examples"][0]
        print(f"warning: {n} recording{' is' if n == 1 else 's are'} in a held-out split and a training (or another held-out) split "
              f"(e.g. {first['held_out']} = {first['other']}), imported as --allow-overlap asks; all listed under overlap in "
              f"{Path(out) / 'import_report.json'}", file=sys.stderr)


@_holds(lambda a: a.out, "an imported corpus")
def cmd_data_import(args) -> None:
    from ..data.recipes import import_corpus

    summary, report = import_corpus(args.kind, args.src, args.out, workers=args.workers, progress=not args.quiet,
                                    allow_overlap=args.allow_overlap)
    _print_import(args.kind, args.out, summary, report)


def _download_dir(args) -> str:
    """DIR, once CORPUS and --parts are known good (a refused corpus or part leaves no trace: no lock, no folder)."""
    from ..data.download import resolve_parts

    args.parts = resolve_parts(args.corpus, args.parts)
    return args.dir


@_holds(_download_dir, "a corpus download")
@_holds(lambda a: a.import_out, "an imported corpus")
def cmd_data_download(args) -> None:
    import shlex

    from ..data.download import corpus_info, download_corpus

    corpus = corpus_info(args.corpus)
    if args.import_out is not None and Path(args.import_out).exists() and not Path(args.import_out).is_dir():
        raise SpeechrqError(f"--import {args.import_out}: not a directory (the corpus directory to write)")  # before any download
    src = download_corpus(args.corpus, args.dir, args.parts, base_url=args.base_url, progress=not args.quiet, say=print)
    if args.import_out is None:
        print(f"next: speechrq data import {corpus.import_kind} {shlex.quote(str(src))} OUT  "
              "(OUT: the corpus directory to write; or add --import OUT to this command)")
        return
    from ..data.recipes import import_corpus

    summary, report = import_corpus(corpus.import_kind, src, args.import_out, workers=_cpu_count(), progress=not args.quiet)
    _print_import(corpus.import_kind, args.import_out, summary, report)


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

    d = sub.add_parser("data", help="download, import and inspect corpora", description="Download, import and inspect corpora.")
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
    from ..data.download import CORPORA, DEFAULT_BASE_URL, GATED, MIRRORS

    parts = "; ".join(f"{c.name}: {', '.join(f'{p} ({size})' for p, size in c.parts.items())}" for c in CORPORA.values())
    dl = dsub.add_parser("download", help="download LibriSpeech or Mini LibriSpeech from OpenSLR (resumable, checked)",
                         description="Download corpora whose licence allows it from OpenSLR, as lhotse does: DIR/PART.tar.gz "
                         "(resumed where it stopped when run again), checked, then extracted to DIR/LibriSpeech/PART with a "
                         ".completed marker (a part that has it is skipped). LibriSpeech archives are checked against "
                         "their SHA-256; Mini LibriSpeech archives have no published checksum and are checked by size only "
                         "(the server's Content-Length). A download cut short is kept and the error says so; an archive "
                         f"with a wrong checksum is removed. Parts: {parts}. Corpora behind a login or a licence form "
                         f"({', '.join(GATED)}) are not downloaded: the command says where to get each, and `speechrq "
                         "data import KIND SRC OUT` then imports it.")
    dl.add_argument("corpus", metavar="CORPUS", help=f"one of: {', '.join(CORPORA)}")
    dl.add_argument("dir", metavar="DIR", help="download folder (archives and the extracted LibriSpeech/ folder)")
    dl.add_argument("--parts", default=None, metavar="P1,P2,...",
                    help="comma-separated parts (default: all of mini_librispeech, dev-clean-2,train-clean-5; required "
                         "for librispeech)")
    dl.add_argument("--base-url", default=DEFAULT_BASE_URL, metavar="URL",
                    help=f"OpenSLR's resources or a mirror ({', '.join(MIRRORS)}); archives are URL/RESOURCE/PART.tar.gz "
                         f"(default: {DEFAULT_BASE_URL})")
    dl.add_argument("--import", dest="import_out", default=None, metavar="OUT",
                    help="then import the result: `speechrq data import librispeech DIR/LibriSpeech OUT` (default: print "
                         "that command)")
    dl.add_argument("--quiet", action="store_true", help="no progress bars")
    dl.set_defaults(func=cmd_data_download)
    sm = dsub.add_parser("summary", help="print a corpus directory's counts", description="Print a corpus directory's counts.")
    sm.add_argument("corpus_dir", metavar="CORPUS_DIR")
    sm.set_defaults(func=cmd_data_summary)

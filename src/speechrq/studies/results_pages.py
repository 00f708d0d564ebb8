"""The documentation's results pages, rendered from the JSON files that hold the measurements.

Every results table of the documentation is made here, at build time (``make docs`` runs
``python -m speechrq.studies.results_pages docs --readme README.md``), by the same formatter that printed it when it
was measured, from the JSON the measurement wrote into ``docs/``: a number on a results page cannot
drift from its measurement. Each page names the command that reproduces it. The list of pages is
:data:`PAGES`; ``tests/test_results_pages.py`` renders every one and checks the README's headline
table against its JSON.

A page is laid out for a reader (:func:`tidy_tables`): a table with one row, a column no row fills or one every row
shares becomes a sentence saying so, a wide table with several Δ columns is split into its values and its
differences, and an interval's verdict goes on a second line of its cell; results pages are marked wide
(``docs/stylesheets/extra.css``). Each figure is drawn again from its JSON (:func:`draw_figures`, colours from
:mod:`speechrq.palette`). The results index and the README open with the claims table of
:mod:`speechrq.studies.headline`; the README's prose numbers are refreshed by :mod:`speechrq.studies.prose_numbers`. Each JSON is checked before it is rendered (:mod:`speechrq.formats`): a hand-edited
number or a removed key is one line naming the file and key (``python -m speechrq.studies.results_pages`` exits 2). A page
marked ``optional`` (a study that may not have run yet, such as ``make real-speech``) says so while its JSON is missing,
so the build does not need it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import formats as schemas
from .prose_numbers import shipped


@dataclass(frozen=True)
class Page:
    name: str  # docs/results/<name>.md
    title: str
    source: str  # the JSON in docs/
    command: str  # what reproduces it
    render: Callable[[dict], str]
    check: Callable[[Any, Any], dict]  # the JSON's validator (speechrq.formats): what render reads
    figure: str | None = None  # a PNG in docs/ made with the JSON
    logs: str | None = None  # a folder of training logs in docs/
    plot: Callable[[dict, Path], None] | None = None  # draws ``figure`` from the JSON (re-drawn at every build)
    empty_columns: dict[str, str] | None = None  # a column no row fills -> why (said under the table that drops it)
    optional: bool = False  # a study that may not have run yet: while its JSON is missing the page says so and how to run it


def _latent(d: dict) -> str:
    from .latent_study import format_study

    return format_study(d)


def _tables(d: dict) -> str:
    from .rpq_tables import format_tables

    return format_tables(d)


def _probes(d: dict) -> str:
    from ..evaluate.run import format_table

    return format_table(d)


def _quality(d: dict) -> str:
    from .quality import format_quality

    return format_quality(d)


def _real_speech(d: dict) -> str:
    from .real_speech import format_study

    return format_study(d)


def _plot_latent(d: dict, path: Path) -> None:
    from .latent_study import plot_study

    plot_study(d, path)


def _plot_quality(d: dict, path: Path) -> None:
    from .quality import plot_quality

    plot_quality(d, path)


def _plot_units(d: dict, path: Path) -> None:
    from ..units.report import plot_report

    plot_report(d["rows"], path)


def _sweep(d: dict) -> str:
    from .sweep import format_sweep

    return format_sweep(d)


def _units_report(d: dict) -> str:
    from ..units.report import format_report

    return format_report(d["rows"])


def _compare(d: dict) -> str:
    from .discrete_asr import format_compare

    return format_compare(d)


def _input_kinds(d: dict) -> str:
    # the JSON's own note is for its reader; the page says the same in a sentence
    lines = ["The k-means row and, from the same k-means quantizer (that of [the one-seed Table II](asr_compare_tiny_bestrq.md)), "
             "its de-duplicated units and those in unit BPE 1000 (`units encode --bpe 1000`), each trained by `speechrq asr train` "
             f"with one training seed and decoded on the {d['test_split']} split. The last column is each input's length on the "
             "training split against plain k-means units (one unit per 40 ms frame).", "",
             "| input | CER | WER | input length against k-means units |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['cer']:.2f} | {r['wer']:.2f} | {100 * r['length_change']:+.0f}% |" for name, r in d["rows"].items()]
    return "\n".join(lines) + "\n"


def format_bench_passes(d: dict) -> str:
    """`benchmarks/bench_passes.py`'s table (what it prints, and its results page) from its JSON."""
    cores = d["cores"]
    lines = [f"Corpus `{d['corpus']}` ({d['split']}), encoder `{Path(d['encoder']).name}`, {cores} cores; the sharded outputs were "
             "checked equal to the one-process ones.", "",
             f"| pass | processes x threads | frames | seconds | frames/s per process | speed-up vs 1 x 1 | speed-up vs 1 x {cores} |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pass']} | {r['processes']} x {r['threads']} | {r['frames']} | {r['seconds']:.1f} | {r['frames_per_s_per_process']:.0f} | "
              f"{r['speedup_vs_1x1']:.2f} | {r[f'speedup_vs_1x{cores}']:.2f} |" for r in d["rows"]]
    return "\n".join(lines) + "\n"


def _phases(d: dict) -> str:
    from ..phases import format_phases, minutes

    lines = [f"`make demo` from a fresh clone, on {d['machine']}." if d.get("machine") else "", ""]
    if d.get("install_seconds") is not None:
        lines += [f"Before the demo, `make install` (the virtual environment, torch 2.13.0 for the CPU, speechrq) took "
                  f"{minutes(d['install_seconds'])}.", ""]
    after = ["", f"A second `make demo` reuses what the first finished and took {minutes(d['second_run_seconds'])}."] if d.get("second_run_seconds") else []
    return "\n".join(lines) + "\n" + format_phases(d) + "\n".join(after) + ("\n" if after else "")


_RPQ_EMPTY = {"Δ against the smallest k": "one k was measured", "Δ against the smallest M": "each kind was measured at one M"}

PAGES = [
    Page("demo_phases", "The demo's phase times", "demo_phases.json",
         "git clone REPO fresh && cd fresh && make install && make demo   # exp/demo/phases.json", _phases, schemas.demo_phases),
    Page("latent_study", "Latent-RQ against BEST-RQ: the seeded study", "latent_study.json", "make latent-study",
         _latent, schemas.latent_study, "latent_study.png", "latent_study_logs", _plot_latent),
    # Figure 6 (training time per epoch) is not shipped: its timings were taken on shared cores (the JSON says why)
    Page("rpq_tables_mel", "The RPQ paper's tables on the stacked log-Mel", "rpq_tables_mel.json", "make rpq-tables", _tables,
         schemas.rpq_tables, None, "rpq_tables_mel_logs", empty_columns=_RPQ_EMPTY),
    Page("ml_tables", "The multilingual column (ML-SUPERB analogue)", "ml_tables.json", "make ml-asr", _tables,
         schemas.rpq_tables, None, "ml_tables_logs", empty_columns=_RPQ_EMPTY),
    Page("ml_probes", "Probes per language (LID, PR)", "ml_probes.json", "make ml-probes", _probes, schemas.eval_results,
         empty_columns={"Avg ↑": "SUPERB's Avg averages ASR, SID, IC and ER, and none of them was probed here"}),
    Page("asr_compare_seeds_tiny_bestrq", "Table II on a narrow source, with training seeds", "asr_compare_seeds_tiny_bestrq.json",
         "make narrow-table", _compare, schemas.compare_page, None, "asr_compare_seeds_logs",
         empty_columns={"Holm p": "the table was made before the family rule (issue 35): each verdict is judged on its own interval"}),
    Page("asr_compare_tiny_bestrq", "Table II on a narrow source, one seed", "asr_compare_tiny_bestrq.json",
         "speechrq asr compare configs/asr/tiny.yaml --encoder assets/reference/tiny_bestrq/checkpoints/step_00004000 \\\n"
         "    --layer 2 --corpus exp/demo/corpus --out exp/asr_compare --k 500 --pq 2,4,8 --rpq 8 --alpha 0.25 \\\n"
         "    --frames 70000 --set optim.max_steps=1200 --set optim.warmup_steps=120 --set train.checkpoint_every=400",
         _compare, schemas.compare_page),
    Page("asr_input_kinds_tiny_bestrq", "ASR input kinds", "asr_input_kinds_tiny_bestrq.json",
         "# after the one-seed Table II (exp/asr_compare), from its k-means quantizer:\n"
         "speechrq units encode exp/asr_compare/units/kmeans_k500_m1 --corpus exp/demo/corpus --out exp/kinds --bpe 1000\n"
         "for input in dedup bpe; do speechrq asr train configs/asr/tiny.yaml --set data.units=exp/kinds --set data.input=$input \\\n"
         "    --set out_dir=exp/kinds_$input --set optim.max_steps=1200 --set optim.warmup_steps=120; "
         "speechrq asr decode exp/kinds_$input --splits test; done", _input_kinds, schemas.input_kinds),
    Page("units_report_tiny_bestrq", "Units report: k-means, PQ and RPQ against the paper's theory", "units_report_tiny_bestrq.json",
         "speechrq units report --encoder assets/reference/tiny_bestrq/checkpoints/step_00004000 --layer 2 \\\n"
         "    --corpus exp/demo/corpus --frames 70000 --k 500 --kinds kmeans,rvq,pq,rpq --out exp/units_report",
         _units_report, schemas.units_report, "units_report_tiny_bestrq.png", plot=_plot_units),
    Page("quality_tiny_4x1024", "Pre-training quality along steps, tiny default", "quality_tiny_4x1024.json",
         "speechrq bench quality configs/pretrain/tiny.yaml --corpus exp/demo/corpus --out exp/quality_4x1024 --steps 2000 --every 250 "
         "--tasks pr --probe-seeds 3", _quality, schemas.quality, "quality_tiny_4x1024.png", plot=_plot_quality),
    Page("quality_tiny_bestrq", "Pre-training quality along steps, the reference run", "quality_tiny_bestrq.json",
         "speechrq bench quality configs/pretrain/tiny.yaml --corpus exp/demo/corpus --out exp/quality --steps 4000 --every 500 "
         "--tasks pr --probe-seeds 3 --set quantizer.num_codebooks=8 --set quantizer.codebook_size=4096", _quality, schemas.quality,
         "quality_tiny_bestrq.png", plot=_plot_quality),
    Page("sweep_tiny", "Small-scale recipe sweep", "sweep_tiny.json",
         "speechrq bench sweep benchmarks/sweep_tiny.yaml --corpus exp/demo/corpus --out exp/sweep", _sweep, schemas.sweep),
    Page("bench_passes", "Corpus passes: one process against two", "bench_passes.json",
         "python benchmarks/bench_passes.py --corpus exp/demo/corpus --split train --json docs/bench_passes.json", format_bench_passes,
         schemas.bench_passes),
]

# studies registered before they have run (prose_numbers.PENDING): each joins PAGES once its JSON is in docs/; until
# then `make docs` writes its page saying so (:func:`write_pending`)
OPTIONAL_PAGES = [
    Page("real_speech", "Real speech: pre-training on the real hour against the synthesized hour", "real_speech.json",
         "make real-speech", _real_speech, schemas.real_speech, logs="real_speech_logs", optional=True),
]
PAGES += [page for page in OPTIONAL_PAGES if shipped(page.source)]


HEADLINE_BEGIN = "<!-- headline results: rendered from docs/*.json by `python -m speechrq.studies.results_pages docs --readme README.md` -->"
HEADLINE_END = "<!-- end of headline results -->"


def headline_table(docs: str | Path) -> str:
    """The README's results table (:mod:`speechrq.studies.headline`: the paper's own arms against the strongest
    baseline, with interval, direction, relative change, data and the verdict after the family rule), from the shipped
    studies' JSON; ``speechrq report`` opens with the same rows."""
    from .headline import format_headline, headline_rows

    return "\n".join([HEADLINE_BEGIN, "", format_headline(headline_rows(docs)), "", HEADLINE_END])


def update_readme(readme: str | Path, docs: str | Path) -> bool:
    """Replace the headline block of ``readme`` by :func:`headline_table` and rewrite the value of every
    ``<!--n:KEY-->VALUE<!--/n-->`` number of its prose (:func:`speechrq.studies.prose_numbers.refresh`); returns
    whether it changed."""
    from ..errors import SpeechrqError
    from ..io import atomic_write_text
    from .prose_numbers import refresh

    text = Path(readme).read_text()
    if HEADLINE_BEGIN not in text or HEADLINE_END not in text:
        raise SpeechrqError(f"{readme}: no headline block ({HEADLINE_BEGIN!r} ... {HEADLINE_END!r})")
    head, rest = text.split(HEADLINE_BEGIN, 1)
    new = refresh(head, docs) + headline_table(docs) + refresh(rest.split(HEADLINE_END, 1)[1], docs)
    if new != text:
        atomic_write_text(readme, new)
    return new != text


# --- tables with nothing to compare: one row, a column no row fills, columns equal in every row

def _table_at(lines: list[str], i: int) -> bool:
    return lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split("|")]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _tidy(head: list[str], rows: list[list[str]], reasons: dict[str, str]) -> list[str]:
    """One table as lines: itself, without the columns no row fills or every row shares (each said in a sentence under
    it), or one sentence where it has nothing to compare (one row, or nothing left but its labels)."""
    blank = {"", "-"}
    if len(rows) == 1:
        shown = [f"{h} {c}" for h, c in zip(head, rows[0]) if c not in blank | {"base", "best"}]  # nothing to be against
        return [f"Only one row was measured here, so this table has nothing to compare: {'; '.join(shown)}."]
    empty = [j for j in range(1, len(head)) if all(r[j] in blank for r in rows)]
    same = [j for j in range(1, len(head)) if j not in empty and len({r[j] for r in rows}) == 1]
    keep = [j for j in range(len(head)) if j not in empty and j not in same]
    notes = [f"Column {head[j]} left out: no row has a value" + (f" ({reasons[head[j]]})" if head[j] in reasons else "") + "."
             for j in empty]
    if len(same) >= 2 and len(keep) <= 2:  # what is left would only repeat the labels (and a number shown elsewhere)
        return [f"Every row ({_and([r[0] for r in rows]) if len(rows) <= 4 else f'all {len(rows)}'}) has "
                                f"{_and([f'{head[j]} {rows[0][j]}' for j in same])}: nothing differs between them to compare."] + (
            [""] + notes if notes else [])
    if same:
        notes.append(f"In every row, {_and([f'{head[j]} {rows[0][j]}' for j in same])}.")
    rows = [[_two_lines(c) for c in r] for r in rows]
    deltas = [j for j in keep[1:] if head[j].startswith("Δ")]
    if len(deltas) >= 2 and len(keep) >= 6:  # too wide for a page: the values, then their differences, by the same rows
        values = [j for j in keep if j not in deltas]
        out = [*_table(head, rows, values), "", f"Differences ({_and([head[j] for j in deltas])}), by the same rows:", "",
               *_table(head, rows, [keep[0], *deltas])]
    else:
        out = _table(head, rows, keep)
    return out + ([""] + notes if notes else [])


def _table(head: list[str], rows: list[list[str]], columns: list[int]) -> list[str]:
    return [_row([head[j] for j in columns]), "|" + "---|" * len(columns), *(_row([r[j] for j in columns]) for r in rows)]


INTERVAL_CELL = re.compile(r"^([+\-−]?\d+(?:\.\d+)? \[[^\]]+\])[;,]? (.+)$")


def _two_lines(cell: str) -> str:
    """``-0.98 [-2.05, +0.10] Holm p 0.951 within noise`` -> the difference and its interval, then (a new line) what
    is said of it: a cell of a wide table is two short lines instead of one long one or four wrapped ones."""
    return INTERVAL_CELL.sub(r"\1<br>\2", cell)


def tidy_tables(text: str, reasons: dict[str, str] | None = None) -> str:
    """Every Markdown table of ``text`` through :func:`_tidy`: a results page shows no table with one row, no column
    that no row fills and no column equal in every row; each is said in a sentence instead. ``reasons``: why a column
    is empty, by its header."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if not _table_at(lines, i):
            out.append(lines[i])
            i += 1
            continue
        head, rows, i = _cells(lines[i]), [], i + 2
        while i < len(lines) and lines[i].startswith("|"):
            rows.append(_cells(lines[i]))
            i += 1
        out += _tidy(head, rows, reasons or {})
    return "\n".join(out)


WIDE = '<span class="srq-wide"></span>'  # docs/stylesheets/extra.css widens a page that holds it


def render(page: Page, docs: Path) -> str:
    """One results page: title, the reproducing command, the table(s) rendered from ``docs/<page.source>`` (with
    :func:`tidy_tables`), figure, logs. Its front matter hides the table of contents and it is marked wide, so its
    tables get the page's width."""
    from ..schema import load

    if page.optional and not (docs / page.source).exists():
        return "\n".join(["---", "hide:", "  - toc", "---", "", f"# {page.title}", "",
                          (f"Not run yet: `{page.command}` runs it and writes `docs/{page.source}`, from which the "
                           "documentation build renders this page."), "", "```sh", page.command, "```", ""])
    data = load(docs / page.source, page.check)
    parts = ["---", "hide:", "  - toc", "---", "", f"# {page.title}", "", WIDE, "",
             "Rendered from [`{0}`](../{0}) when the documentation is built; reproduce it with:".format(page.source), "",
             "```sh", page.command, "```", "", tidy_tables(page.render(data).rstrip(), page.empty_columns), ""]
    if page.figure:
        parts += [f"![{page.title}](../{page.figure})", ""]
    if page.logs:
        parts += [f"Training logs: `docs/{page.logs}/`.", ""]
    return "\n".join(parts)


def draw_figures(docs: str | Path) -> list[Path]:
    """Every page's figure drawn again from its JSON (``Page.plot``), so that each reads at the page's width in the
    colours of :mod:`speechrq.palette`; a file is replaced only when its bytes change. Returns the paths rewritten."""
    from ..io import atomic_write_bytes
    from ..schema import load

    docs, written = Path(docs), []
    for page in PAGES:
        if not (page.plot and page.figure) or (page.optional and not (docs / page.source).exists()):
            continue
        data = load(docs / page.source, page.check)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "figure.png"
            page.plot(data, fresh)
            new = fresh.read_bytes()
        target = docs / page.figure
        if not target.exists() or target.read_bytes() != new:
            atomic_write_bytes(target, new)
            written.append(target)
    return written


def results_index(docs: str | Path) -> str:
    """``docs/results/index.md``: the claims table (:func:`speechrq.studies.headline.format_headline`, the README's) and
    the list of pages."""
    from .headline import format_headline, headline_rows

    lines = ["---", "hide:", "  - toc", "---", "", "# Results", "", WIDE, "",
             "Every table here is rendered from the JSON its measurement wrote, when the documentation is built.", "",
             "## The papers' claims, measured here", "",
             "Each claim of [Latent-RQ and the RPQ paper](../index.md#the-papers) with the arm the paper proposes against the "
             "strongest baseline it names, the change with its 95% interval and the verdict after the table's family rule "
             "([how verdicts are reached](../reproducibility.md#verdicts-the-unit-of-replication-intervals-families-dev-and-test)). "
             "Every row was measured on synthetic speech with a tiny encoder: read it in its own setting.", "",
             '<div class="srq-claims" markdown>', "", format_headline(headline_rows(docs)), "", "</div>", "",
             "## Every results page", ""]
    lines += [f"- [{p.title}]({p.name}.md), from `docs/{p.source}`" for p in PAGES]
    lines += [f"- [{p.title}]({p.name}.md): not run yet (`{p.command}`)" for p in OPTIONAL_PAGES if p not in PAGES]
    return "\n".join(lines) + "\n"


def write_pages(docs: str | Path) -> list[Path]:
    """Every page of :data:`PAGES` into ``docs/results/``, their index and their figures; returns the paths written."""
    from ..io import atomic_write_text

    docs = Path(docs)
    pages = {docs / "results" / f"{page.name}.md": render(page, docs) for page in PAGES}  # every JSON checked before any is written
    index = results_index(docs)
    written = []
    for path, text in pages.items():
        atomic_write_text(path, text)
        written.append(path)
    atomic_write_text(docs / "results" / "index.md", index)
    return [*written, docs / "results" / "index.md", *draw_figures(docs)]


def write_pending(docs: str | Path) -> list[Path]:
    """The page of each :data:`OPTIONAL_PAGES` study whose JSON is not in ``docs`` yet, saying so and how to run it (the
    site's navigation names every page); returns the paths written."""
    from ..io import atomic_write_text

    docs, written = Path(docs), []
    for page in OPTIONAL_PAGES:
        if page not in PAGES:  # a page of PAGES is written by write_pages (its JSON missing from ``docs``: render says so)
            path = docs / "results" / f"{page.name}.md"
            atomic_write_text(path, render(page, docs))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m speechrq.studies.results_pages [DOCS] [--readme README]``; a JSON that does not check is one line, exit 2."""
    import argparse

    from ..errors import SpeechrqError

    ap = argparse.ArgumentParser(prog="python -m speechrq.studies.results_pages",
                                 description="Render docs/results/*.md from the JSON in DOCS (and the README's headline table).")
    ap.add_argument("docs", nargs="?", default="docs")
    ap.add_argument("--readme", help="also rewrite this README's headline block")
    a = ap.parse_args(argv)
    try:
        for p in [*write_pages(a.docs), *write_pending(a.docs)]:
            print(p)
        if a.readme and update_readme(a.readme, a.docs):
            print(f"{a.readme}: headline table updated")
    except SpeechrqError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

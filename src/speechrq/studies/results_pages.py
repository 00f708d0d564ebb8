"""The documentation's results pages, rendered from the JSON files that hold the measurements.

Every results table of the documentation is made here, at build time (``make docs`` runs
``python -m speechrq.studies.results_pages docs``), by the same formatter that printed it when it
was measured, from the JSON the measurement wrote into ``docs/``: a number on a results page cannot
drift from its measurement. Each page names the command that reproduces it. The list of pages is
:data:`PAGES`; ``tests/test_results_pages.py`` renders every one and checks the README's headline
table against its JSON. Each JSON is checked before it is rendered (:mod:`speechrq.formats`): a hand-edited
number or a removed key is one line naming the file and key (``python -m speechrq.studies.results_pages`` exits 2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import formats as schemas


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
    lines = [d["note"], "", f"Test split: {d['test_split']}.", "", "| input | CER | WER | input length against k-means units |",
             "|---|---|---|---|"]
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
    after = [f"", f"A second `make demo` reuses what the first finished and took {minutes(d['second_run_seconds'])}."] if d.get("second_run_seconds") else []
    return "\n".join(lines) + "\n" + format_phases(d) + "\n".join(after) + ("\n" if after else "")


PAGES = [
    Page("demo_phases", "The demo's phase times", "demo_phases.json",
         "git clone REPO fresh && cd fresh && make install && make demo   # exp/demo/phases.json", _phases, schemas.demo_phases),
    Page("latent_study", "Latent-RQ against BEST-RQ: the seeded study", "latent_study.json", "make latent-study",
         _latent, schemas.latent_study, "latent_study.png", "latent_study_logs"),
    # Figure 6 (training time per epoch) is not shipped: its timings were taken on shared cores (the JSON says why)
    Page("rpq_tables_mel", "The RPQ paper's tables on the stacked log-Mel", "rpq_tables_mel.json", "make rpq-tables", _tables,
         schemas.rpq_tables, None, "rpq_tables_mel_logs"),
    Page("ml_tables", "The multilingual column (ML-SUPERB analogue)", "ml_tables.json", "make ml-asr", _tables,
         schemas.rpq_tables, None, "ml_tables_logs"),
    Page("ml_probes", "Probes per language (LID, PR)", "ml_probes.json", "make ml-probes", _probes, schemas.eval_results),
    Page("asr_compare_seeds_tiny_bestrq", "Table II on a narrow source, with training seeds", "asr_compare_seeds_tiny_bestrq.json",
         "make narrow-table", _compare, schemas.compare_page, None, "asr_compare_seeds_logs"),
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
         _units_report, schemas.units_report, "units_report_tiny_bestrq.png"),
    Page("quality_tiny_4x1024", "Pre-training quality along steps, tiny default", "quality_tiny_4x1024.json",
         "speechrq bench quality configs/pretrain/tiny.yaml --corpus exp/demo/corpus --out exp/quality_4x1024 --steps 2000 --every 250 "
         "--tasks pr --probe-seeds 3", _quality, schemas.quality, "quality_tiny_4x1024.png"),
    Page("quality_tiny_bestrq", "Pre-training quality along steps, the reference run", "quality_tiny_bestrq.json",
         "speechrq bench quality configs/pretrain/tiny.yaml --corpus exp/demo/corpus --out exp/quality --steps 4000 --every 500 "
         "--tasks pr --probe-seeds 3 --set quantizer.num_codebooks=8 --set quantizer.codebook_size=4096", _quality, schemas.quality,
         "quality_tiny_bestrq.png"),
    Page("sweep_tiny", "Small-scale recipe sweep", "sweep_tiny.json",
         "speechrq bench sweep benchmarks/sweep_tiny.yaml --corpus exp/demo/corpus --out exp/sweep", _sweep, schemas.sweep),
    Page("bench_passes", "Corpus passes: one process against two", "bench_passes.json",
         "python benchmarks/bench_passes.py --corpus exp/demo/corpus --split train --json docs/bench_passes.json", format_bench_passes,
         schemas.bench_passes),
]


HEADLINE_BEGIN = "<!-- headline results: rendered from docs/*.json by `python -m speechrq.studies.results_pages docs --readme README.md` -->"
HEADLINE_END = "<!-- end of headline results -->"


def headline_table(docs: str | Path) -> str:
    """The README's results table (:mod:`speechrq.studies.headline`: the paper's own arms against the strongest
    baseline, with interval, direction, relative change, data and the verdict after the family rule), from the shipped
    studies' JSON; ``speechrq report`` opens with the same rows."""
    from .headline import format_headline, headline_rows

    return "\n".join([HEADLINE_BEGIN, "", format_headline(headline_rows(docs)), "", HEADLINE_END])


def update_readme(readme: str | Path, docs: str | Path) -> bool:
    """Replace the headline block of ``readme`` by :func:`headline_table`; returns whether it changed."""
    from ..errors import SpeechrqError
    from ..io import atomic_write_text

    text = Path(readme).read_text()
    if HEADLINE_BEGIN not in text or HEADLINE_END not in text:
        raise SpeechrqError(f"{readme}: no headline block ({HEADLINE_BEGIN!r} ... {HEADLINE_END!r})")
    head, rest = text.split(HEADLINE_BEGIN, 1)
    new = head + headline_table(docs) + rest.split(HEADLINE_END, 1)[1]
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def render(page: Page, docs: Path) -> str:
    """One results page: title, the reproducing command, the table(s) rendered from ``docs/<page.source>``, figure, logs."""
    from ..schema import load

    data = load(docs / page.source, page.check)
    parts = [f"# {page.title}", "", "Rendered from [`{0}`](../{0}) when the documentation is built; reproduce it with:".format(page.source), "",
             "```sh", page.command, "```", "", page.render(data).rstrip(), ""]
    if page.figure:
        parts += [f"![{page.title}](../{page.figure})", ""]
    if page.logs:
        parts += [f"Training logs: `docs/{page.logs}/`.", ""]
    return "\n".join(parts)


def write_pages(docs: str | Path) -> list[Path]:
    """Every page of :data:`PAGES` into ``docs/results/``, and their index; returns the paths written."""
    from ..io import atomic_write_text

    docs = Path(docs)
    pages = {docs / "results" / f"{page.name}.md": render(page, docs) for page in PAGES}  # every JSON checked before any is written
    written = []
    for path, text in pages.items():
        atomic_write_text(path, text)
        written.append(path)
    index = ["# Results", "", "Every table here is rendered from the JSON its measurement wrote, when the documentation is built.", ""]
    index += [f"- [{p.title}]({p.name}.md), from `docs/{p.source}`" for p in PAGES]
    atomic_write_text(docs / "results" / "index.md", "\n".join(index) + "\n")
    return [*written, docs / "results" / "index.md"]


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
        for p in write_pages(a.docs):
            print(p)
        if a.readme and update_readme(a.readme, a.docs):
            print(f"{a.readme}: headline table updated")
    except SpeechrqError as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

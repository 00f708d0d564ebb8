"""Numbers in the prose of the README and the documentation come from the studies' JSON (speechrq.studies.prose_numbers).

**The rule.** A *result number* is a token of a page's prose that is

- a decimal number, ``\\d+.\\d+`` (``0.73``, ``59.69``), signed or not (``+3.83``, ``−0.98``, ``± 1.00``), or
- a percentage, ``\\d+%`` or ``\\d+.\\d+%`` (``19%``, ``20.0%``),

where *prose* is the page less its fenced code blocks, inline code spans, link targets, URLs, HTML comments, the
README's generated headline block, and the filled-in numbers themselves (``{{ key }}`` in a page,
``<!--n:key-->...<!--/n-->`` in the README). Integers without ``%`` (step counts, sizes like ``4 × 1024``, years)
and versions (``2.13.0``: two dots or more) are not result numbers.

Every result number must be filled in from a JSON at build time, or be one of :data:`NOT_RESULTS`: a setting or a
constant of the method, a threshold a test holds, or a number quoted from a paper, each matched in its context and
listed with its reason. So a result typed into the prose by hand fails :func:`test_no_result_number_is_typed_by_hand`
naming the page, the number and its line, and a filled-in number that disagrees with its JSON cannot exist: the
pages are filled when the site is built, and :func:`test_the_readme_numbers_agree_with_the_json` fails when the
README's written values are stale (``python -m speechrq.studies.results_pages docs --readme README.md`` rewrites
them).

Checked: README.md and every page of the site except the rendered results pages (``docs/results/``: tables from
the JSON), the API reference (``docs/api/``: docstrings), the command-line and config references (``docs/reference/``:
generated from the parser and the config dataclasses at ``make docs``, settings and defaults, not results), the changelog (``CHANGELOG.md``) and the earlier measurements
(``docs/history.md``: history, by definition not the current numbers), and the studies' own outputs mkdocs.yml excludes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from speechrq.errors import SpeechrqError
from speechrq.studies import prose_numbers
from speechrq.studies.prose_numbers import PLACEHOLDER, README_NUMBER, fill, numbers, refresh, stale, value

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP = ("results/", "api/", "reference/", "changelog.md", "history.md")


def checked_pages() -> list[Path]:
    text = (ROOT / "mkdocs.yml").read_text()
    block = re.search(r"^exclude_docs: \|\n((?:  .*\n)+)", text, re.M).group(1)
    excluded = {line.strip().lstrip("/") for line in block.splitlines() if line.strip().endswith(".md")}
    pages = [p for p in sorted(DOCS.rglob("*.md")) if (rel := str(p.relative_to(DOCS))) not in excluded and not rel.startswith(SKIP)]
    return [ROOT / "README.md", *pages]


# (pattern around the number, why it is not a result): a result number is exempt when a match of one of these
# covers it on its line
NOT_RESULTS = [
    (r"\b95% (?:t-)?interval|\b95% paired|\ba Welch 95%|its 95%|with the 95%|\(95%|, 95%|and 95%", "the intervals' level, a setting"),
    (r"(?:family-wise error of|below) 5%", "the family-wise error level, a setting"),
    (r"least 94%", "the coverage test's threshold (tests/test_significance.py)"),
    (r"seed SDs 0\.5 to 4", "the simulation's settings (tests/test_significance.py)"),
    (r"\b[αpσ] [=≥≤<] \d+(?:\.\d+)?|α = 0\.0625|α = 0\.125|α = 0\.25|α = 0\.5|and 0\.25\b", "a quantizer or masking setting"),
    (r"\(paper: 0\.4\)|p = 0\.4", "BEST-RQ's masking probability, a setting"),
    (r"(?:of|probability of) 0\.01 masks", "a masking setting of the sweep"),
    (r"Masking 60%|mask(?:ing)? 60%", "a masking setting of the sweep"),
    (r"20/50/80%|at 20%, 50% and 80%", "the paper's refresh schedule, a setting"),
    (r"label smoothing 0\.1|CTC weight 0\.3|weight 0\.3", "the ASR recipe's settings"),
    (r"default 0\.2", "--dev-share's default"),
    (r"default 80%", "--cache-max-gb's default"),
    (r"holds 30% commands|--command-share 0\.3", "the corpus's command share, a setting"),
    (r"22\.05 kHz", "espeak-ng's sample rate"),
    (r"\[0\.9, 1\.1\]", "the rate jitter's range, a setting"),
    (r"above 1% of its peak", "the SNR's definition of speech samples"),
    (r"shorter than 0\.1 s", "the import's shortest audio, a setting"),
    (r"past 1\.0", "float audio's full scale"),
    (r"above 0\.999", "the feature test's threshold (tests/test_features.py)"),
    (r"synthesizes 0\.3 h", "bench_passes.py's default corpus size, a setting"),
    (r"Python 3\.11", "a version"),
    (r"0\.7M-parameter", "the tiny preset's size, a property of the model"),
    (r"±10% warp", "a perturbation's setting"),
    (r"paper reports 1\.28", "quoted from the Latent-RQ paper"),
    (r"by 19\.7% there", "quoted from the RPQ paper (Table VI)"),
    (r"21\.8% and 20\.0% relative", "quoted from the RPQ paper (abstract, Table II)"),
    (r"−20\.0% and −19\.6% relative", "quoted from the RPQ paper (Sec. V, test-1h)"),
    (r"19\.2 against 21\.7", "quoted from the RPQ paper (test-1h CER)"),
    (r"5\.90, 6\.10, 6\.40 WER", "quoted from the RPQ paper (Table III)"),
    (r"\(100\.6 h, 28,539|\| 166\.8 GB|\| 5\.7 GB|\| 50\.0 GB", "sizes planned by speechrq.encoders.cache.plan_cache from "
     "published corpus durations: arithmetic on the corpora's sizes, not a measurement"),
]

TOKEN = re.compile(r"(?<![\w.])(?:[+\-−±]\s?)?\d+(?:\.\d+)+%?|(?<![\w.])\d+%")


def prose(text: str) -> str:
    """The page less what is not prose (see the module docstring); line breaks kept, so a line number still points."""
    from speechrq.studies.results_pages import HEADLINE_BEGIN, HEADLINE_END

    blank = lambda m: "\n" * m.group(0).count("\n")  # noqa: E731
    text = re.sub(re.escape(HEADLINE_BEGIN) + ".*?" + re.escape(HEADLINE_END), blank, text, flags=re.S)
    text = re.sub(r"^(```|~~~).*?^\1", blank, text, flags=re.S | re.M)
    text = README_NUMBER.sub(blank, text)
    text = re.sub(r"<!--.*?-->", blank, text, flags=re.S)
    text = PLACEHOLDER.sub(" ", text)
    text = re.sub(r"`[^`]*`", lambda m: " " + blank(m), text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"https?://\S+", " ", text)


def bare_results(text: str) -> list[tuple[int, str, str]]:
    """``(line number, number, line)`` of every result number of ``text`` that no :data:`NOT_RESULTS` pattern covers."""
    found = []
    for n, line in enumerate(prose(text).splitlines(), 1):
        allowed = [m.span() for pattern, _ in NOT_RESULTS for m in re.finditer(pattern, line)]
        for m in TOKEN.finditer(line):
            if m.group(0).count(".") >= 2:  # a version
                continue
            if not any(a <= m.start() and m.end() <= b for a, b in allowed):
                found.append((n, m.group(0), line.strip()))
    return found


@pytest.mark.parametrize("page", checked_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_result_number_is_typed_by_hand(page):
    found = bare_results(page.read_text())
    assert not found, f"{page.relative_to(ROOT)}: result numbers typed by hand (fill them from the JSON with " \
                      "{{ key }} / <!--n:key-->, or list a setting in NOT_RESULTS):\n" + \
                      "\n".join(f"  line {n}: {tok!r} in: {line[:140]}" for n, tok, line in found)


def test_the_rule_catches_a_typed_result_and_spares_settings():
    text = ("`layers: auto` loses 1.71 PER to BEST-RQ (0.75 more than the ranked-best layers) at α = 0.125,\n"
            "{{ latent.auto.pr.abs }} with a 95% interval, torch 2.13.0, 4 × 1024 heads, 19% shorter.\n"
            "```sh\nspeechrq units fit --alpha 0.125   # 59.69\n```\n<!--n:mel.kmeans500_bpe-->59.69 ± 1.00<!--/n-->\n")
    assert [tok for _, tok, _ in bare_results(text)] == ["1.71", "0.75", "19%"]


@pytest.mark.parametrize("page", [*checked_pages(), *sorted((DOCS / "results").glob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_placeholder_names_a_number_of_the_json(page):
    text = page.read_text()
    filled = fill(text, DOCS)
    assert not PLACEHOLDER.search(filled)
    for m in README_NUMBER.finditer(text):
        value(m.group(1), DOCS)


def test_the_readme_numbers_agree_with_the_json():
    """Fails when a JSON changed and the README's written numbers were not refreshed (`make docs` refreshes them)."""
    readme = (ROOT / "README.md").read_text()
    assert README_NUMBER.search(readme), "the README fills no number from the JSON"
    assert stale(readme, DOCS) == []


def test_the_numbers_named_in_issue_36_are_the_json_s():
    """The prose once said 0.75 where the JSON gave 0.73, and ± 0.98 where it gave ± 1.00: now both kinds are read (the
    `auto` arm is gone from the study since issue 35's re-run; the paper's design and the strong θ's steps are read)."""
    d = json.loads((DOCS / "latent_study.json").read_text())
    design = d["arms"][d["paper_arm"]]["pr"]["vs_base"]
    assert value("latent.paper.pr.dci", DOCS) == f"{design['mean']:+.2f} [{design['ci95'][0]:+.2f}, {design['ci95'][1]:+.2f}]".replace("-", "−")
    assert value("latent.reference_steps", DOCS) == str(d["reference_steps"]) == "2000"
    mel = json.loads((DOCS / "rpq_tables_mel.json").read_text())
    bpe = next(r for r in mel["table1"] if "BPE" in r["name"])
    assert value("mel.kmeans500_bpe", DOCS) == f"{bpe['cer']:.2f} ± {bpe['cer_std']:.2f}"
    assert "{{ latent.paper.pr.dci }}" in (DOCS / "guide" / "pretrain.md").read_text()
    assert "<!--n:mel.kmeans500_bpe-->" in (ROOT / "README.md").read_text()


def _docs_copy(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in prose_numbers.SOURCES:
        shutil.copy(DOCS / name, docs / name)
    return docs


def test_a_changed_json_changes_the_prose_and_the_readme(tmp_path):
    docs = _docs_copy(tmp_path)
    page = "BEST-RQ {{ latent.bestrq.pr }}; the baseline <!--n:mel.kmeans500_bpe-->59.69 ± 1.00<!--/n-->."
    assert fill(page, docs).startswith(f"BEST-RQ {value('latent.bestrq.pr', DOCS)};")
    d = json.loads((docs / "latent_study.json").read_text())
    d["arms"]["BEST-RQ"]["pr"]["mean"] = 12.345
    (docs / "latent_study.json").write_text(json.dumps(d))
    m = json.loads((docs / "rpq_tables_mel.json").read_text())
    bpe = next(r for r in m["table1"] if "BPE" in r["name"])
    bpe["cer"] = 61.5
    (docs / "rpq_tables_mel.json").write_text(json.dumps(m))
    assert fill(page, docs).startswith("BEST-RQ 12.35 ± ")
    now = f"61.50 ± {bpe['cer_std']:.2f}"  # the mean changed, the spread as shipped
    assert stale(page, docs) == [("mel.kmeans500_bpe", "59.69 ± 1.00", now)]
    assert f"<!--n:mel.kmeans500_bpe-->{now}<!--/n-->" in refresh(page, docs)


def test_an_unknown_key_is_an_error_naming_it():
    with pytest.raises(SpeechrqError, match=r"unknown number 'latent.paper.pr.dciX'.*did you mean latent.paper.pr.dci"):
        fill("x {{ latent.paper.pr.dciX }} y", DOCS)


def test_the_readme_refresh_rewrites_only_the_numbers(tmp_path):
    from speechrq.studies.results_pages import update_readme

    readme = tmp_path / "README.md"
    original = (ROOT / "README.md").read_text()
    current = value("phases.total", DOCS)
    broken = original.replace(f"<!--n:phases.total-->{current}<!--/n-->", "<!--n:phases.total-->9 min 99 s<!--/n-->")
    assert broken != original
    readme.write_text(broken)
    assert stale(broken, DOCS) == [("phases.total", "9 min 99 s", current)]
    assert update_readme(readme, DOCS) and readme.read_text() == original
    assert not update_readme(readme, DOCS)


def test_each_source_is_checked_by_its_results_page_s_validator():
    from speechrq import formats
    from speechrq.studies.results_pages import PAGES

    assert set(prose_numbers.CHECKS) == set(prose_numbers.SOURCES) == {p.source for p in PAGES}
    assert all(getattr(formats, prose_numbers.CHECKS[p.source]) is p.check for p in PAGES)

"""The documentation's results pages and the README's headline table, rendered from the shipped JSON (speechrq.studies.results_pages)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from speechrq.studies.results_pages import HEADLINE_BEGIN, HEADLINE_END, PAGES, headline_table, render, update_readme, write_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_results_page_renders_a_table_from_its_json_and_names_its_command(page):
    text = render(page, DOCS)
    assert text.startswith(f"# {page.title}\n") and page.command in text and f"({'../' + page.source})" in text
    assert re.search(r"^\|.*\|$", text, re.M), "no table"
    for extra in (page.figure, page.logs):
        assert extra is None or (DOCS / extra).exists(), extra


def test_a_number_changed_in_the_json_changes_the_page(tmp_path):
    """The pages are renderings, not copies: edit a measurement and the page follows."""
    page = next(p for p in PAGES if p.name == "bench_passes")
    shutil.copy(DOCS / page.source, tmp_path / page.source)
    before = render(page, tmp_path)
    d = json.loads((tmp_path / page.source).read_text())
    d["rows"][0]["seconds"] = 1234.5
    (tmp_path / page.source).write_text(json.dumps(d))
    after = render(page, tmp_path)
    assert "1234.5" in after and "1234.5" not in before


def test_write_pages_writes_every_page_and_an_index(tmp_path):
    for p in PAGES:
        for name in (p.source, p.figure, p.logs):
            if name:
                (shutil.copytree if (DOCS / name).is_dir() else shutil.copy)(DOCS / name, tmp_path / name)
    written = write_pages(tmp_path)
    assert sorted(w.name for w in written) == sorted([f"{p.name}.md" for p in PAGES] + ["index.md"])
    index = (tmp_path / "results" / "index.md").read_text()
    assert all(f"({p.name}.md)" in index for p in PAGES)


def test_the_readme_headline_table_agrees_with_the_json():
    """Fails when a shipped study's JSON changes and the README's table was not rendered again (`make docs` does it)."""
    readme = (ROOT / "README.md").read_text()
    assert HEADLINE_BEGIN in readme and HEADLINE_END in readme
    block = readme[readme.index(HEADLINE_BEGIN): readme.index(HEADLINE_END) + len(HEADLINE_END)]
    assert block == headline_table(DOCS)


def test_update_readme_rewrites_only_the_headline_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{HEADLINE_BEGIN}\n| stale | 1 |\n{HEADLINE_END}\n\noutro\n")
    assert update_readme(readme, DOCS)
    text = readme.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\noutro\n") and headline_table(DOCS) in text and "stale" not in text
    assert not update_readme(readme, DOCS)  # already current

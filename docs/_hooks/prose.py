"""mkdocs hook (mkdocs.yml `hooks:`): the numbers of the prose and the claims table, filled in from the JSON in docs/
when the site is built (speechrq.studies.prose_numbers). An unknown key stops the build with one line naming the page."""

from __future__ import annotations

from mkdocs.exceptions import PluginError


def on_page_markdown(markdown, page, config, files):
    from speechrq.errors import SpeechrqError
    from speechrq.studies.prose_numbers import fill

    try:
        return fill(markdown, config["docs_dir"])
    except SpeechrqError as e:
        raise PluginError(f"{page.file.src_path}: {e}") from None

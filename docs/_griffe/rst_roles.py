"""A griffe extension for the API reference: reST roles in docstrings read as code.

speechrq's docstrings name objects with Sphinx roles (:class:`~speechrq.encoders.EncoderLayer`,
:func:`normalize_text`); Markdown has no roles, so each becomes inline code of the name as Sphinx
would show it (the last component after ``~``, else the name as written).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    tilde, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)

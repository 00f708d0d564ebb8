"""The words of a claim's verdict, and the rule that turns a difference's verdict into a claim's.

Below :mod:`speechrq.studies.report` (every claim) and :mod:`speechrq.studies.headline` (the headline rows),
which both say verdicts this way.
"""

from __future__ import annotations

HELD, AGAINST, NOISE, UNKNOWN, MISSING = "held", "against", "not at this scale (within noise)", "not established (no noise estimate)", "not measured"


def seeded(d: dict) -> str:
    """A difference's verdict (after its table's family rule, :mod:`speechrq.studies.significance`) as the claim's:
    ``better`` in the paper's direction is held, ``worse`` against; one seed establishes nothing."""
    from .significance import ONE_SEED  # numpy: imported when a verdict is made, not with the module

    return (HELD if d["verdict"] == "better" else AGAINST if d["verdict"] == "worse" else
            f"{UNKNOWN}: one training seed" if d["verdict"] == ONE_SEED else NOISE)

"""One colour per system in every figure speechrq draws, and the short names figures give them.

A reader who has learnt that BEST-RQ is blue on one page finds it blue on the next: every plot function takes its
colours from :func:`color`, by the system's name as the studies write it (``"BEST-RQ"``, ``"Latent-RQ layers [-1, 0]
(ranked best, branch 50%)"``, ``"fbank"``, ``"random-init"``, ``"k-means (k=500)"``, ``"PQ (M=8)"``, ``"rpq"``,
``"continuous"``, ...). The colours are Okabe and Ito's colour-blind-safe set, extended with Paul Tol's muted set for
the Latent-RQ ablations. Imports nothing of speechrq, so every layer may use it.
"""

from __future__ import annotations

import re

# the families, each one colour
BEST_RQ = "#0072B2"  # blue
LATENT_RQ = "#D55E00"  # vermillion: the ranked-best arm, and any Latent-RQ run without a finer name
FBANK = "#555555"  # dark grey: the filterbank floor
RANDOM_INIT = "#A8A8A8"  # light grey: a random initialisation
KMEANS = "#009E73"  # bluish green
RVQ = "#CC79A7"  # reddish purple
PQ = "#E69F00"  # orange
RPQ = "#56B4E9"  # sky blue
CONTINUOUS = "#000000"  # black: continuous features, the ceiling of discrete units

# the Latent-RQ arms of the seeded study (substring of the arm's name -> colour), checked in this order
LATENT_ARMS = [
    ("paper's design", "#882255"),  # wine: the paper's middle layers on its 20/50/80% schedule
    ("paper schedule", "#DDCC77"),  # sand: that schedule on the ranked-best layers (an ablation of earlier studies)
    ("lr continues", "#44AA99"),  # teal
    ("no standardisation", "#999933"),  # olive
    ("middle", "#AA4499"),  # purple
    ("auto", "#117733"),  # green
    ("ranked best", LATENT_RQ),
]
REFERENCE_BEST_RQ = "#332288"  # indigo: the reference continued with BEST-RQ
REFERENCE_LATENT_RQ = "#CC6677"  # rose: the reference continued with Latent-RQ

# name (lower case, as the studies write it) -> colour, for the families
FAMILIES = [
    (r"^(fbank|filterbank)\b", FBANK),
    (r"^random", RANDOM_INIT),
    (r"^continuous", CONTINUOUS),
    (r"^(k-?means|kms)\b", KMEANS),
    (r"^rvq\b", RVQ),
    (r"^rpq\b", RPQ),
    (r"^pq\b", PQ),
    (r"^(best-rq|bestrq|pre-trained)", BEST_RQ),
]


def color(name: str) -> str:
    """The colour of the system called ``name`` (any case); a name of no known system gets a grey that no system has."""
    low = name.strip().lower()
    if low.startswith("reference"):
        return REFERENCE_LATENT_RQ if "latent" in low else REFERENCE_BEST_RQ
    if "latent-rq" in low or low.startswith("latent"):
        return next((c for key, c in LATENT_ARMS if key in low), LATENT_RQ)
    return next((c for pattern, c in FAMILIES if re.search(pattern, low)), "#7F7F7F")


def shades(name: str, n: int) -> list[str]:
    """``n`` shades of ``name``'s colour, light to dark, for one system drawn at several settings (RPQ at each α)."""
    base = color(name).lstrip("#")
    r, g, b = (int(base[i:i + 2], 16) for i in (0, 2, 4))
    out = []
    for i in range(n):
        t = 0.55 - 0.9 * i / max(n - 1, 1)  # +0.55 (towards white) .. -0.35 (towards black)
        mix = (lambda v: v + (255 - v) * t) if t >= 0 else (lambda v: v * (1 + t))
        out.append("#" + "".join(f"{int(round(mix(v))):02x}" for v in (r, g, b)))
    return out


def short_name(name: str) -> str:
    """A figure's label for a study's arm: ``"Latent-RQ layers [-1, 0] (ranked best, branch 50%)"`` ->
    ``"Latent-RQ [-1, 0], ranked best"``; names that are short already are kept."""
    m = re.match(r"Latent-RQ layers (\[[^\]]*\]|auto)\s*(?:\((.*)\)|, (.*))?$", name)
    if m:
        layers, paren, tail = m.groups()
        what = (paren or tail or "").replace(", branch 50%", "").replace("branch 50%", "").strip(" ,")
        return f"Latent-RQ {layers}" + (f", {what}" if what else "")
    m = re.match(r"reference \+ (\d+) (BEST-RQ|Latent-RQ) steps(?:, layers (.*))?$", name)
    if m:
        steps, method, layers = m.groups()
        return f"reference + {steps} {method}" + (f" {layers}" if layers else "")
    return name

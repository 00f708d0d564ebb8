"""One colour per system on every figure (speechrq.palette), and the plot functions that use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrq import palette
from speechrq.palette import color, shades, short_name

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name,expected", [
    ("BEST-RQ", palette.BEST_RQ), ("pre-trained", palette.BEST_RQ), ("bestrq_seed0@1000", palette.BEST_RQ),
    ("fbank", palette.FBANK), ("filterbank", palette.FBANK), ("random-init", palette.RANDOM_INIT),
    ("random-init-tiny", palette.RANDOM_INIT), ("k-means (k=500)", palette.KMEANS), ("kmeans", palette.KMEANS),
    ("k-means (k=500), de-duplicated", palette.KMEANS), ("PQ (M=8)", palette.PQ), ("pq", palette.PQ),
    ("RPQ (M=32, α=0.125)", palette.RPQ), ("rpq", palette.RPQ), ("RVQ (V=2)", palette.RVQ), ("continuous", palette.CONTINUOUS),
    ("Latent-RQ layers [-1, 0] (ranked best, branch 50%)", palette.LATENT_RQ),
    ("Latent-RQ layers [1, 2], paper's design (20/50/80%)", "#882255"),
    ("reference + 500 BEST-RQ steps", palette.REFERENCE_BEST_RQ),
    ("reference + 500 Latent-RQ steps, layers [-1, 0]", palette.REFERENCE_LATENT_RQ),
])
def test_each_system_has_its_colour(name, expected):
    assert color(name) == expected


def test_the_study_s_arms_have_distinct_colours_and_short_names():
    arms = list(json.loads((DOCS / "latent_study.json").read_text())["arms"])
    assert len({color(a) for a in arms}) == len(arms)
    names = [short_name(a) for a in arms]
    assert len(set(names)) == len(arms) and max(map(len, names)) <= 45
    assert short_name("Latent-RQ layers [-1, 0] (ranked best, branch 50%)") == "Latent-RQ [-1, 0], ranked best"
    assert short_name("Latent-RQ layers auto (branch 50%)") == "Latent-RQ auto"


def test_the_families_have_distinct_colours():
    families = [palette.BEST_RQ, palette.LATENT_RQ, palette.FBANK, palette.RANDOM_INIT, palette.KMEANS, palette.RVQ, palette.PQ,
                palette.RPQ, palette.CONTINUOUS]
    assert len(set(families)) == len(families)
    # every Latent-RQ arm its own colour, none a family's (the ranked-best arm is the family's own)
    arms = [c for key, c in palette.LATENT_ARMS if key != "ranked best"] + [palette.REFERENCE_BEST_RQ, palette.REFERENCE_LATENT_RQ]
    assert len(set(arms)) == len(arms) and not set(arms) & set(families)


def test_shades_run_light_to_dark_around_the_colour():
    s = shades("rpq", 5)
    lum = [sum(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in s]
    assert len(set(s)) == 5 and lum == sorted(lum, reverse=True)


def test_the_quality_plot_gives_each_baseline_its_colour_whatever_the_order(tmp_path, monkeypatch):
    """The two quality figures once swapped the baselines' colours (they were given by position)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from speechrq.studies.quality import plot_quality

    seen = []
    original = Axes.axhline
    monkeypatch.setattr(Axes, "axhline", lambda self, y=0, *a, **k: seen.append((k.get("label"), k.get("color"))) or original(self, y, *a, **k))
    d = json.loads((DOCS / "quality_tiny_bestrq.json").read_text())
    plot_quality(d, tmp_path / "a.png")
    for h in d["tasks"].values():
        h["baselines"] = dict(reversed(list(h["baselines"].items())))
    plot_quality(d, tmp_path / "b.png")
    first, second = seen[: len(seen) // 2], seen[len(seen) // 2:]
    assert sorted(first) == sorted(second) and dict(first)["fbank (± std band)"] == palette.FBANK

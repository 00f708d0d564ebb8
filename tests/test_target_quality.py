"""Target quality (Figures 5 and 6): phone spans on the 40 ms grid, separability numbers, t-SNE figures."""

from __future__ import annotations

import numpy as np
from lhotse import SupervisionSegment
from lhotse.supervision import AlignmentItem
from test_encoders import make_checkpoint

from speechrq.data.corpus import load_cuts
from speechrq.encoders import FrozenEncoder, HiddenStateCache, cache_hidden_states
from speechrq.evaluate.target_quality import phone_spans, separability, target_quality


class _Cut:
    def __init__(self, items):
        self.supervisions = [SupervisionSegment("u", "u", 0.0, 1.0, alignment={"phone": items})]


def test_phone_spans_on_the_encoder_grid():
    items = [AlignmentItem("sil", 0.0, 0.1), AlignmentItem("a", 0.1, 0.2), AlignmentItem("b", 0.3, 0.01), AlignmentItem("c", 0.9, 0.5)]
    # 40 ms frames: a covers 0.10-0.30 s -> frames 2..7 (round(2.5)=2, round(7.5)=8); b is shorter than a frame -> widened
    # to one; c runs past the end -> clipped to the 25 frames there are; silence is dropped
    assert phone_spans(_Cut(items), 25) == [("a", 2, 8), ("b", 8, 9), ("c", 22, 25)]


def test_separability_tells_clusters_from_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    y = [k for k in range(4) for _ in range(30)]
    clustered = centres[y] + rng.normal(size=(120, 16))
    noise = rng.normal(size=(120, 16))
    good, bad = separability(clustered, y), separability(noise, y)
    assert good["knn_accuracy"] > 95 and good["silhouette"] > 0.3
    assert bad["knn_accuracy"] < 50 and abs(bad["silhouette"]) < 0.1
    assert good["points"] == 120 and good["classes"] == 4
    # single-point classes are left out; fewer than two classes leave nothing to measure
    assert separability(noise[:5], [0, 0, 1, 1, 2])["points"] == 4
    assert separability(noise[:3], [0, 0, 1]) is None


def test_target_quality_numbers_and_figures(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    enc = FrozenEncoder.from_checkpoint(ckpt)
    cuts = load_cuts(pretrain_corpus, "train")
    cache_hidden_states(enc, cuts, HiddenStateCache(tmp_path / "hs", enc.fingerprint), progress=False)
    res = target_quality({"run@0": enc}, cuts, tmp_path / "hs", tmp_path, per_speaker=6, top_phones=6, per_phone=40)
    # Mel, and the tiny preset's default target layers 1 and 2
    assert list(res) == ["Mel", "run@0 layer 1", "run@0 layer 2"]
    mel = res["Mel"]
    assert mel["phones"]["classes"] == 6 and mel["phones"]["points"] == 240
    assert mel["speakers"]["classes"] == 24
    # Mel projections keep phone identity: far above the 1-in-6 chance
    assert mel["phones"]["knn_accuracy"] > 50
    for name in ("target_tsne_phones.png", "target_tsne_speakers.png"):
        assert (tmp_path / name).stat().st_size > 5000
    # figures=False (evaluate --no-tsne): the same numbers, and no figure of an earlier run left beside them
    assert target_quality({"run@0": enc}, cuts, tmp_path / "hs", tmp_path, per_speaker=6, top_phones=6, per_phone=40,
                          figures=False) == res
    assert not any(tmp_path.glob("target_tsne_*.png"))


def test_a_corpus_without_alignments_gets_the_speaker_view(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    enc = FrozenEncoder.from_checkpoint(ckpt)
    cuts = load_cuts(pretrain_corpus, "train").subset(first=60)
    bare = cuts.map_supervisions(lambda s: s.with_alignment("phone", []))
    cache_hidden_states(enc, bare, HiddenStateCache(tmp_path / "hs", enc.fingerprint), progress=False)
    res = target_quality({"run@0": enc}, bare, tmp_path / "hs", tmp_path, per_speaker=3)
    assert all(r["phones"] is None and r["speakers"]["points"] > 0 for r in res.values())
    assert (tmp_path / "target_tsne_speakers.png").exists() and not (tmp_path / "target_tsne_phones.png").exists()

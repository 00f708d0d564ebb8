"""Ranking target sources (speechrq.targets.rank, ``speechrq targets rank``): the fair comparison and the label-free measure."""

from __future__ import annotations

import json

import pytest
import torch
from test_encoders import make_checkpoint

from speechrq.cli import main
from speechrq.data.corpus import load_cuts
from speechrq.encoders import FrozenEncoder
from speechrq.evaluate.target_quality import rank_sources, sample_cuts
from speechrq.targets.rank import MEL, kappa, mel_source, perturbation_agreement, select_layers


def noise_source(feats, lengths):
    """A 'layer' that ignores its input: fresh noise at every call."""
    g = torch.Generator().manual_seed(int(feats.abs().sum() * 1000) % 2**31)
    return torch.randn(feats.shape[0], feats.shape[1] // 4, 96, generator=g), torch.div(lengths, 4, rounding_mode="floor")


def test_kappa_is_one_for_equal_codes_and_zero_for_independent_or_constant_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 16, (4000, 3), generator=g)
    assert torch.allclose(kappa(a, a, 16), torch.ones(3, dtype=torch.float64))
    b = torch.randint(0, 16, (4000, 3), generator=g)
    assert kappa(a, b, 16).abs().max() < 0.03
    const = torch.zeros(4000, 3, dtype=torch.long)
    assert torch.equal(kappa(const, const, 16), torch.zeros(3, dtype=torch.float64))  # agreement without information


def test_select_layers_is_deterministic_and_breaks_ties_to_the_shallower():
    assert select_layers({-1: 0.5, 0: 0.7, 1: 0.7, 2: 0.1}, 2) == [0, 1]
    assert select_layers({-1: 0.5, 0: 0.7, 1: 0.7, 2: 0.1}, 1) == [0]
    with pytest.raises(ValueError, match="cannot pick 3"):
        select_layers({0: 1.0, 1: 0.0}, 3)


@pytest.fixture(scope="module")
def ranking(pretrain_corpus, tmp_path_factory):
    enc = FrozenEncoder.from_checkpoint(make_checkpoint(pretrain_corpus, tmp_path_factory.mktemp("rank"), seed=0))
    cuts = sample_cuts(load_cuts(pretrain_corpus, "train"), 4, 0)  # dev holds one utterance per speaker
    sources = {MEL: mel_source, "copy of Mel": mel_source, "noise": noise_source}
    return rank_sources(sources, cuts, enc.features, num_codebooks=4, codebook_size=64, codebook_dim=8)


def test_a_layer_that_copies_mel_ranks_equal_to_mel(ranking):
    mel, copy = ranking["sources"][MEL], ranking["sources"]["copy of Mel"]
    assert mel == copy  # the same projections for every source: equal inputs score exactly alike
    assert mel["phones"]["points"] > 50 and mel["speakers"]["classes"] > 2


def test_a_layer_of_noise_ranks_last_on_every_measure(ranking):
    src = ranking["sources"]
    for what in ("phones", "speakers"):
        assert src["noise"][what]["knn_accuracy"] < src[MEL][what]["knn_accuracy"] - 10, what
    assert abs(src["noise"]["agreement"]) < 0.02 < src[MEL]["agreement"]
    assert set(ranking["agreement_vs_labels"]) == {"phones", "speakers"}


def test_agreement_is_a_function_of_the_sources_and_batches(pretrain_corpus):
    feats = torch.randn(2, 80, 80, generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([80, 60])
    one = perturbation_agreement({MEL: mel_source}, [(feats, lens)], 4, 64, 8)
    assert one == perturbation_agreement({MEL: mel_source}, [(feats, lens)], 4, 64, 8)
    with pytest.raises(ValueError, match="no frames"):
        perturbation_agreement({MEL: mel_source}, [(feats[:, :3], torch.tensor([3, 3]))], 4, 64, 8)


def test_targets_rank_command(pretrain_corpus, tmp_path, capsys):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "rank.json"
    assert main(["targets", "rank", str(ckpt), "--corpus", str(pretrain_corpus), "--split", "train", "--per-speaker", "3",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["sources"]) == {MEL, "layer -1", "layer 0", "layer 1", "layer 2", "layer 3"}
    assert report["num_codebooks"] == 4  # the checkpoint's N, for every source
    assert "| Mel |" in capsys.readouterr().out
    assert main(["targets", "rank", str(ckpt), "--corpus", str(pretrain_corpus), "--per-speaker", "1"]) == 2
    assert "--per-speaker" in capsys.readouterr().err

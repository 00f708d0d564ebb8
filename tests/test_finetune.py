"""The fine-tuning probe (ft): the whole encoder and a CTC head on a few labelled minutes."""

from __future__ import annotations

import json

import torch
from test_encoders import make_checkpoint

from speechrq.cli import main
from speechrq.data.corpus import load_cuts
from speechrq.encoders import FrozenEncoder
from speechrq.evaluate.finetune import FinetuneConfig, finetune, labelled_subset, spec_augment


def test_labelled_subset_is_seeded_and_sized_by_minutes(pretrain_corpus):
    cuts = list(load_cuts(pretrain_corpus, "train"))
    sub = labelled_subset(cuts, 0.5)
    total = sum(c.duration for c in sub)
    assert 30.0 <= total < 30.0 + max(c.duration for c in cuts)
    assert [c.id for c in labelled_subset(cuts[::-1], 0.5)] == [c.id for c in sub]  # whatever the manifest order
    assert [c.id for c in labelled_subset(cuts, 0.5, seed=1)] != [c.id for c in sub]


def test_spec_augment_masks_inside_each_utterance():
    x = torch.ones(3, 100, 80)
    lens = torch.tensor([100, 50, 30])
    y = spec_augment(x, lens, 2, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 < (y == 0).float().mean() < 0.6
    for i, n in enumerate(lens.tolist()):
        zero_rows = (y[i] == 0).all(-1).nonzero().flatten()
        assert all(r < max(n, 20) for r in zero_rows.tolist())  # time masks start inside the utterance


def test_finetune_trains_a_copy_and_is_reproducible(pretrain_corpus, tmp_path):
    enc = FrozenEncoder.from_checkpoint(make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0))
    before = {k: v.clone() for k, v in enc.encoder.state_dict().items()}
    cuts = {s: list(load_cuts(pretrain_corpus, s))[:24] for s in ("train", "dev", "test")}
    cfg = FinetuneConfig(minutes=1.0, steps=6, lrs=(2e-3,), batch_seconds=20.0, eval_every=3)
    r, = finetune(enc, cuts, cfg, seeds=[0])
    assert r.task == "ft" and r.metric == "per" and r.epoch in (3, 6) and r.lr == 2e-3 and 0 <= r.test <= 200
    assert all(torch.equal(before[k], v) for k, v in enc.encoder.state_dict().items())  # the frozen encoder is untouched
    assert finetune(enc, cuts, cfg, seeds=[0]) == [r]  # same seed, same result


def test_evaluate_ft_skips_the_filterbank_and_reuses_its_result(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    args = ["evaluate", str(ckpt), "--random-baseline", "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "ft",
            "--out", str(out), "--no-target-analysis", "--ft-steps", "4", "--ft-minutes", "0.5", "--quiet"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]["run@0"]["tasks"]) == {"ft"} and set(res["models"]["random-init"]["tasks"]) == {"ft"}
    assert res["models"]["fbank"]["tasks"] == {} and res["finetune"]["steps"] == 4
    table = (out / "results.md").read_text()
    assert "FT 0.5 min, 4 steps PER ↓" in table and "| fbank | - |" in table
    saved = list((out / "probes").glob("*/ft.*.json"))
    assert len(saved) == 1 + 3  # the checkpoint, and each of the random-init baseline's three weight draws
    stamp = [p.stat().st_mtime_ns for p in saved]
    assert main(args) == 0  # nothing retrained
    assert [p.stat().st_mtime_ns for p in saved] == stamp

"""``speechrq evaluate`` end to end on the tiny corpus: probes, table, JSON, layer-weight figure, cache reuse."""

from __future__ import annotations

import json

from test_featurizer import make_checkpoint

from speechrq.cli import main
from speechrq.evaluate.probes import CHARS, _greedy, label_of


def test_evaluate_writes_results_and_reuses_hidden_states(pretrain_corpus, tmp_path, capsys):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    args = ["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sid,er", "--out", str(tmp_path / "ev"),
            "--epochs", "2", "--lrs", "3e-3", "--quiet"]
    assert main(args) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    m = res["models"]["run@0"]
    assert m["utterances_encoded"] > 0 and set(m["tasks"]) == {"sid", "er"}
    sid = m["tasks"]["sid"]
    assert sid["metric"] == "accuracy" and 0 <= sid["test"] <= 100 and len(sid["layer_weights"]) == 5
    assert abs(sum(sid["layer_weights"]) - 1) < 1e-5 and sid["lr"] == 3e-3 and 1 <= sid["epoch"] <= 2
    assert (tmp_path / "ev" / "layer_weights.png").stat().st_size > 1000
    assert "| run@0 |" in (tmp_path / "ev" / "results.md").read_text() and "| run@0 |" in capsys.readouterr().out
    # a second evaluation of the same checkpoint runs no encoder pass
    assert main(args) == 0
    again = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert again["models"]["run@0"]["utterances_encoded"] == 0


def test_labels_and_greedy_ctc(pretrain_corpus):
    from speechrq.data.corpus import load_cuts

    cuts = list(load_cuts(pretrain_corpus, "dev"))
    assert all(label_of("sid", c) and label_of("er", c) for c in cuts)
    commands = [c for c in cuts if label_of("ic", c)]
    assert commands and all(len(label_of("ic", c)) == 3 for c in commands)
    assert all(set(label_of("asr", c)) <= set(CHARS) for c in cuts)
    import torch

    # blank=0, 'a'=2: "a a _ a" collapses to "aa" only across a blank
    logp = torch.full((1, 5, len(CHARS) + 1), -10.0)
    for t, k in enumerate([2, 2, 0, 2, 1]):
        logp[0, t, k] = 0.0
    assert _greedy(logp, torch.tensor([5])) == ["aa"]

"""``speechrq asr compare``: Table II's rows (continuous, k-means, PQ, RPQ) trained and scored in one resumable command."""

from __future__ import annotations

import json

import torch
import yaml
from conftest import tiny_pretrain_config

from speechrq.checkpoint import save_checkpoint, step_dir
from speechrq.cli import main
from speechrq.config import config_from_dict, config_to_dict
from speechrq.features import FeatureStats
from speechrq.studies.discrete_asr import systems


def test_systems_are_table_twos_rows():
    names = [s["name"] for s in systems(500, [2, 4], [8], 0.125)]
    assert names == ["continuous", "k-means (k=500)", "PQ (M=2)", "PQ (M=4)", "RPQ (M=8, α=0.125)"]
    assert [s["name"] for s in systems(500, [], [8], 0.25, continuous=False)] == ["k-means (k=500)", "RPQ (M=8, α=0.25)"]


def test_compare_trains_every_system_and_reuses_them(pretrain_corpus, tmp_path, capsys):
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}  # other weights
    other = save_checkpoint(step_dir(tmp_path / "other", 0), state, {}, {"config": config_to_dict(cfg), "step": 0})
    asr = {"out_dir": "unused", "data": {"units": "unused", "max_duration": 20.0, "num_buckets": 4, "vocab_size": 40},
           "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": 3},
           "train": {"device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 3}}
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(asr))
    args = ["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(ckpt), "--layer", "1", "--corpus", str(pretrain_corpus),
            "--out", str(tmp_path / "cmp"), "--k", "16", "--pq", "2", "--rpq", "2", "--alpha", "0.5", "--frames", "3000",
            "--test-split", "dev", "--beam", "2", "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = report["rows"]
    assert set(rows) == {"continuous", "k-means (k=16)", "PQ (M=2)", "RPQ (M=2, α=0.5)"}
    assert rows["continuous"]["bits_per_second"] == 96 * 32 * 25 and rows["PQ (M=2)"]["bits_per_second"] == 2 * 4 * 25
    assert all(r["cer"] >= 0 and r["epoch_s"] > 0 and r["steps"] == 3 for r in rows.values())
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert table.index("| continuous |") < table.index("| k-means (k=16) |") < table.index("| PQ (M=2) |") < table.index("| RPQ")
    before = (tmp_path / "cmp" / "compare.json").read_text()
    assert main(args) == 0  # every system reused: the same numbers
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"] == json.loads(before)["rows"]
    # another layer, encoder or config into the same --out is refused in one line naming it, never the first run's table
    capsys.readouterr()
    for flag, value, named in (("--layer", "0", "layer 1 -> 0"), ("--k", "12", "k 16 -> 12"), ("--encoder", str(other), "encoder"),
                               ("--set", "optim.lr=0.001", "config.optim.lr")):
        changed = [*args, flag, value] if flag == "--set" else [v if a != flag else value for a, v in zip(["", *args], args)]
        assert main(changed) == 2
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1 and "holds an ASR comparison made with other inputs" in err
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"] == json.loads(before)["rows"]


def test_compare_runs_systems_side_by_side(pretrain_corpus, tmp_path):
    """--jobs 2: every system in its own process, the same units and rows as one after the other, the shared timing said."""
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    asr = {"out_dir": "unused", "data": {"units": "unused", "max_duration": 20.0, "num_buckets": 4, "vocab_size": 40},
           "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": 2},
           "train": {"device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 2}}
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(asr))

    def run(jobs: int) -> dict:
        out = tmp_path / f"cmp{jobs}"
        assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(ckpt), "--layer", "1", "--corpus",
                     str(pretrain_corpus), "--out", str(out), "--k", "16", "--pq", "", "--rpq", "2", "--alpha", "0.5", "--frames",
                     "3000", "--no-continuous", "--test-split", "dev", "--beam", "2", "--jobs", str(jobs), "--quiet"]) == 0
        return json.loads((out / "compare.json").read_text())["rows"]

    one, two = run(1), run(2)
    assert set(one) == set(two) == {"k-means (k=16)", "RPQ (M=2, α=0.5)"}
    assert all(r["jobs"] == 2 for r in two.values()) and all(r["jobs"] == 1 for r in one.values())
    for name in one:
        assert two[name]["steps"] == 2 and two[name]["utterances"] == one[name]["utterances"]
        assert abs(two[name]["cer"] - one[name]["cer"]) < 1e-6, name
    from safetensors.torch import load_file

    for slug in ("kmeans_k16_m1", "rpq_k16_m2_a0.5"):  # the same quantizers, up to the order of faiss's sums over threads
        a, b = (load_file(tmp_path / f"cmp{j}" / "units" / slug / "units.safetensors") for j in (1, 2))
        assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)
    assert "side by side" in (tmp_path / "cmp2" / "compare.md").read_text()
    assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(ckpt), "--layer", "1", "--corpus", str(pretrain_corpus),
                 "--out", str(tmp_path / "x"), "--jobs", "0", "--quiet"]) == 2

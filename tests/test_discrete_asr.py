"""``speechrq asr compare``: Table II's rows (continuous, k-means, PQ, RPQ) trained and scored in one resumable command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_pretrain_config

from speechrq.checkpoint import save_checkpoint, step_dir
from speechrq.cli import main
from speechrq.config import config_from_dict, config_to_dict
from speechrq.features import FeatureStats
from speechrq.errors import SpeechrqError
from speechrq.studies.discrete_asr import parse_ms, parse_rpq, run_dir, systems


def untrained_checkpoint(corpus, run):
    """A tiny encoder checkpoint at step 0 (seeded), the source of every comparison below."""
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, run))
    model = build_model(cfg, FeatureStats.load(corpus / "feature_stats.json"))
    return save_checkpoint(step_dir(run, 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})


def write_asr_config(path, steps: int) -> None:
    asr = {"out_dir": "unused", "data": {"units": "unused", "max_duration": 20.0, "num_buckets": 4, "vocab_size": 40},
           "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": steps},
           "train": {"device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": steps}}
    path.write_text(yaml.safe_dump(asr))


def test_systems_are_table_twos_rows():
    names = [s["name"] for s in systems(500, [2, 4], [8], 0.125)]
    assert names == ["continuous", "k-means (k=500)", "PQ (M=2)", "PQ (M=4)", "RPQ (M=8, α=0.125)"]
    assert [s["name"] for s in systems(500, [], [8], 0.25, continuous=False)] == ["k-means (k=500)", "RPQ (M=8, α=0.25)"]


def test_a_row_is_timed_only_where_every_run_trained_alone():
    """A row's time averages its runs only when each trained alone; a run recorded beside others (jobs 2, even with
    times an earlier speechrq kept) leaves the row untimed; a hand-edited record is one line naming the key."""
    from speechrq.formats import compare_runs
    from speechrq.studies.discrete_asr import summarize_seeds, timed_alone

    run = {"cer": 50.0, "wer": 70.0, "cer_dev": 49.0, "bits_per_second": 224.0, "steps": 2, "utterances": 10, "decoding": {},
           "final_loss": 3.0, "jobs": 1, "s_per_step": 0.2, "epoch_s": 10.0}
    alone = summarize_seeds({"0": run, "1": run | {"s_per_step": 0.4, "epoch_s": 20.0}})
    assert abs(alone["s_per_step"] - 0.3) < 1e-12 and abs(alone["epoch_s"] - 15.0) < 1e-12
    shared = run | {"jobs": 2}
    assert "s_per_step" not in timed_alone(shared) and timed_alone(run) == run
    for seeds in ({"0": run, "1": timed_alone(shared)}, {"0": run, "1": {k: v for k, v in shared.items() if k != "s_per_step"}}):
        assert not {"s_per_step", "epoch_s"} & set(summarize_seeds(seeds))
    for seed, said in ((run | {"jobs": 0}, "rows.x.seeds.0.jobs: expected at least 1"),
                       ({k: v for k, v in run.items() if k != "s_per_step"}, "rows.x.seeds.0: missing key 's_per_step'")):
        with pytest.raises(SpeechrqError, match=f"compare.json: {re.escape(said)}"):
            compare_runs({"rows": {"x": {"seeds": {"0": seed}}}}, "compare.json")


def test_rpq_rows_carry_their_own_alpha_and_rvq_rows_their_levels():
    rpq = parse_rpq("8, 32, 32@0.25,32@0.0625", 0.125)
    assert rpq == [(8, 0.125), (32, 0.125), (32, 0.25), (32, 0.0625)]
    rows = systems(500, [], rpq, 0.125, continuous=False, rvq_ms=[2, 4])
    assert [r["name"] for r in rows] == ["k-means (k=500)", "RPQ (M=8, α=0.125)", "RPQ (M=32, α=0.125)", "RPQ (M=32, α=0.25)",
                                         "RPQ (M=32, α=0.0625)", "RVQ (V=2)", "RVQ (V=4)"]
    assert rows[3]["quantizer"] == {"kind": "rpq", "k": 500, "num_subspaces": 32, "alpha": 0.25}
    assert rows[5]["quantizer"] == {"kind": "rvq", "k": 500, "num_subspaces": 2}
    assert len({run_dir(Path("o"), r, 0) for r in rows}) == len(rows)  # every row has its own runs and units
    for bad in ("32@", "x", "32@1.5", "0@0.5", "32@0.1250001"):  # the last would name the same row as 32@0.125
        with pytest.raises(SpeechrqError, match="--rpq"):
            parse_rpq(bad, 0.125)
    with pytest.raises(SpeechrqError, match="--rvq: 0, -1: stream counts"):
        parse_ms("2,0,-1", "--rvq")


@pytest.mark.slow
def test_compare_trains_every_system_and_reuses_them(pretrain_corpus, tmp_path, capsys):
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}  # other weights
    other = save_checkpoint(step_dir(tmp_path / "other", 0), state, {}, {"config": config_to_dict(cfg), "step": 0})
    write_asr_config(tmp_path / "asr.yaml", steps=3)
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
    # each replicate seed drew its own quantizer: units/<quantizer>/seed<S>, the seed recorded with each run
    assert sorted(p.name for p in (tmp_path / "cmp" / "units" / "kmeans_k16_m1").iterdir()) == ["seed0"]
    assert rows["RPQ (M=2, α=0.5)"]["seeds"]["0"]["quantizer_seed"] == 0 and "cer_dev" in rows["PQ (M=2)"]
    # a comparison made before each seed drew its own quantizer (asr-compare/1) is refused, never extended
    identity_path = tmp_path / "cmp" / "identity.json"
    saved = identity_path.read_text()
    identity_path.write_text(json.dumps(json.loads(saved) | {"code": "asr-compare/1"}))
    capsys.readouterr()
    assert main(args) == 2 and "before each seed drew its own quantizer" in capsys.readouterr().err
    identity_path.write_text(saved)
    # another layer, encoder or config into the same --out is refused in one line naming it, never the first run's table
    capsys.readouterr()
    for flag, value, named in (("--layer", "0", "layer 1 -> 0"), ("--k", "12", "k 16 -> 12"), ("--encoder", str(other), "encoder"),
                               ("--set", "optim.lr=0.001", "config.optim.lr")):
        changed = [*args, flag, value] if flag == "--set" else [v if a != flag else value for a, v in zip(["", *args], args)]
        assert main(changed) == 2
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1 and "holds an ASR comparison made with other inputs" in err
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"] == json.loads(before)["rows"]


@pytest.mark.slow
def test_compare_runs_systems_side_by_side(pretrain_corpus, tmp_path):
    """--jobs 2: every system in its own process, the same units and rows as one after the other; no time taken on the
    shared cores is reported, and the table says why."""
    ckpt = untrained_checkpoint(pretrain_corpus, tmp_path / "run")
    write_asr_config(tmp_path / "asr.yaml", steps=2)

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
        a, b = (load_file(tmp_path / f"cmp{j}" / "units" / slug / "seed0" / "units.safetensors") for j in (1, 2))
        assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)
    # trained side by side, no run is timed: no time per step or epoch anywhere in the table, and the file and page say why
    shared = json.loads((tmp_path / "cmp2" / "compare.json").read_text())
    assert not any(k in x for r in two.values() for x in [r, *r["seeds"].values()] for k in ("s_per_step", "epoch_s"))
    assert "--jobs 2" in shared["timings_removed"] and "one process per run folder" in shared["timings_removed"]
    assert f"Times per epoch: not shown. {shared['timings_removed']}" in (tmp_path / "cmp2" / "compare.md").read_text()
    alone = json.loads((tmp_path / "cmp1" / "compare.json").read_text())
    assert "timings_removed" not in alone and all(r["epoch_s"] > 0 and r["seeds"]["0"]["s_per_step"] > 0 for r in one.values())
    assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(ckpt), "--layer", "1", "--corpus", str(pretrain_corpus),
                 "--out", str(tmp_path / "x"), "--jobs", "0", "--quiet"]) == 2


@pytest.mark.slow
def test_compare_over_training_seeds_with_the_papers_baseline(pretrain_corpus, tmp_path):
    """Raw, de-duplicated and de-dup + BPE k-means rows from one quantizer, every row over training seeds with mean ± sd,
    RPQ against each k-means row with a t-interval and Holm's rule; a seed added later trains only that seed."""
    ckpt = untrained_checkpoint(pretrain_corpus, tmp_path / "run")
    write_asr_config(tmp_path / "asr.yaml", steps=2)
    out = tmp_path / "cmp"
    args = ["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(ckpt), "--layer", "1", "--corpus", str(pretrain_corpus),
            "--out", str(out), "--k", "16", "--pq", "", "--rpq", "2", "--alpha", "0.5", "--frames", "3000", "--no-continuous",
            "--test-split", "dev", "--beam", "2", "--kmeans-inputs", "units,dedup,bpe", "--unit-bpe", "24", "--quiet"]
    assert main([*args, "--seeds", "0,1"]) == 0
    report = json.loads((out / "compare.json").read_text())
    raw, dedup, bpe = "k-means (k=16)", "k-means (k=16), de-duplicated", "k-means (k=16), de-dup + unit BPE 24 (the paper's baseline)"
    rows = report["rows"]
    assert set(rows) == {raw, dedup, bpe, "RPQ (M=2, α=0.5)"} and report["training_seeds"] == [0, 1]
    assert [rows[n]["input"] for n in (raw, dedup, bpe)] == ["units", "dedup", "bpe"] and rows[bpe]["unit_bpe"] == 24
    for name, r in rows.items():
        assert set(r["seeds"]) == {"0", "1"}
        assert abs(r["cer"] - (r["seeds"]["0"]["cer"] + r["seeds"]["1"]["cer"]) / 2) < 1e-9 and r["cer_std"] >= 0
    # the three k-means rows of a seed read that seed's one quantizer: one units folder per quantizer and seed
    assert sorted(p.name for p in (out / "units").iterdir()) == ["kmeans_k16_m1", "rpq_k16_m2_a0.5"]
    for kind in ("", "_dedup", "_bpe"):
        run_cfg = yaml.safe_load((out / "runs" / f"kmeans_k16_m1{kind}" / "seed1" / "config.yaml").read_text())
        assert run_cfg["data"]["units"] == str(out / "units" / "kmeans_k16_m1" / "seed1" / "corpus") and run_cfg["train"]["seed"] == 1
    assert (out / "units" / "kmeans_k16_m1" / "seed1" / "corpus" / "bpe.model").exists()
    # each seed redraws its quantizers: RPQ's random subsets and k-means' initialisation differ between seeds
    from safetensors.torch import load_file

    for slug in ("kmeans_k16_m1", "rpq_k16_m2_a0.5"):
        a, b = (load_file(out / "units" / slug / f"seed{s}" / "units.safetensors") for s in (0, 1))
        assert any(not torch.equal(a[k], b[k]) for k in a), slug
    assert [rows[raw]["seeds"][s]["quantizer_seed"] for s in ("0", "1")] == [0, 1]
    # every number and interval is recomputed from the per-utterance errors written beside the JSON
    from speechrq.studies.evidence import read_archive, recheck_compare

    assert recheck_compare(report, read_archive(out / "compare_errors.json.gz")) == []
    # the seeds are trained apart: another seed, another model
    assert rows[raw]["seeds"]["0"]["run"] != rows[raw]["seeds"]["1"]["run"]
    diffs = {(d["row"], d["baseline"]): d for d in report["differences"]}
    assert set(diffs) == {("RPQ (M=2, α=0.5)", b) for b in (raw, dedup, bpe)}
    for (row, base), d in diffs.items():
        lo, hi = d["cer"]["ci"]
        assert lo <= d["cer"]["difference"] <= hi and d["cer"]["seeds"] == [2, 2] and d["verdict"] in ("better", "worse", "within noise")
        assert d["family"]["size"] == 3 and d["p_holm"] >= d["cer"]["p"]  # Holm over the table's 3 comparisons
        assert abs(d["cer"]["difference"] - (rows[row]["cer"] - rows[base]["cer"])) < 1e-6
    assert "ΔCER" in (out / "compare.md").read_text() and "± " in (out / "compare.md").read_text()
    # one more seed: only it trains; the finished seeds' checkpoints are not touched
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("seed[01]/checkpoints/*/*")}
    assert len(before) >= 8  # 4 rows x 2 seeds, each a checkpoint with files
    assert main([*args, "--seeds", "0,1,2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("seed[01]/checkpoints/*/*")} == before
    again = json.loads((out / "compare.json").read_text())
    assert all(set(r["seeds"]) == {"0", "1", "2"} for r in again["rows"].values())
    assert again["rows"][raw]["seeds"]["0"] == rows[raw]["seeds"]["0"]
    # asked for seeds 0 and 1 again: the report holds those two, the third stays on disk for later
    assert main([*args, "--seeds", "0,1"]) == 0
    assert json.loads((out / "compare.json").read_text())["rows"][raw]["cer"] == rows[raw]["cer"]
    for bad in (["--seeds", "x"], ["--kmeans-inputs", "units,raw"], ["--unit-bpe", "1"], ["--seed", "-1"], ["--seeds", "0,-1"]):
        assert main([*args, *bad]) == 2


def test_compare_on_the_stacked_filterbank(pretrain_corpus, tmp_path):
    """The 320-dimensional source (a corpus's feature_stats.json, layer -1) goes through fit, encode, training and decoding."""
    write_asr_config(tmp_path / "asr.yaml", steps=2)
    out = tmp_path / "cmp"
    assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(pretrain_corpus / "feature_stats.json"), "--layer", "-1",
                 "--corpus", str(pretrain_corpus), "--out", str(out), "--k", "16", "--pq", "8", "--rpq", "", "--frames", "3000",
                 "--test-split", "dev", "--beam", "2", "--quiet"]) == 0
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert rows["continuous"]["bits_per_second"] == 320 * 32 * 25 and rows["PQ (M=8)"]["bits_per_second"] == 8 * 4 * 25
    assert all(r["utterances"] > 0 and r["cer"] >= 0 for r in rows.values())
    # a finished comparison is assembled again from its runs' numbers and errors alone: with the units and checkpoints
    # gone (a copy of its small files on another machine), a rerun trains and encodes nothing and gives the same rows
    import shutil

    before = json.loads((out / "compare.json").read_text())
    assert all(s["epoch_s"] == s["s_per_step"] * s["steps_per_epoch"] for r in before["rows"].values() for s in r["seeds"].values())
    shutil.rmtree(out / "units")
    for ckpt in out.glob("runs/*/seed*/checkpoints"):
        shutil.rmtree(ckpt)
    assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(pretrain_corpus / "feature_stats.json"), "--layer", "-1",
                 "--corpus", str(pretrain_corpus), "--out", str(out), "--k", "16", "--pq", "8", "--rpq", "", "--frames", "3000",
                 "--test-split", "dev", "--beam", "2", "--quiet"]) == 0
    assert json.loads((out / "compare.json").read_text()) == before and not (out / "units").exists()


@pytest.mark.slow
def test_compare_with_character_output_scores_each_language(multilingual_corpus, tmp_path):
    """ML-SUPERB's analogue: character output units from the training transcripts (Mandarin characters, Cyrillic, Latin),
    CER per language, their mean, and each difference per language."""
    write_asr_config(tmp_path / "asr.yaml", steps=2)
    out = tmp_path / "cmp"
    assert main(["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(multilingual_corpus / "feature_stats.json"),
                 "--layer", "-1", "--corpus", str(multilingual_corpus), "--out", str(out), "--k", "16", "--pq", "", "--rpq", "4",
                 "--frames", "3000", "--beam", "2", "--no-continuous", "--seeds", "0,1", "--set", "data.output=char", "--quiet"]) == 0
    report = json.loads((out / "compare.json").read_text())
    for name, row in report["rows"].items():
        by = row["cer_by_language"]
        assert set(by) == {"en", "ru", "cmn"}
        for seed in ("0", "1"):
            errors = json.loads((run_dir(out, row, int(seed)) / "errors_test.json").read_text())
            for lang in by:  # each language's CER is its utterances' character errors over their characters
                keep = [k for k, g in enumerate(errors["languages"]) if g == lang]
                assert keep and row["seeds"][seed]["cer_by_language"][lang] == pytest.approx(
                    100 * sum(errors["char_errors"][k] for k in keep) / sum(errors["chars"][k] for k in keep))
        mean = [sum(row["seeds"][s]["cer_by_language"].values()) / 3 for s in ("0", "1")]
        assert row["cer_language_mean"] == pytest.approx(sum(mean) / 2)  # each language counted once, then over seeds
    # the output tokens are the characters of the training transcripts, Mandarin ones among them
    from speechrq.text import BPETokenizer

    tok = BPETokenizer(run_dir(out, next(iter(report["rows"].values())), 0) / "tokens.model")
    pieces = {tok.sp.id_to_piece(i) for i in range(len(tok))}
    assert all(len(p) == 1 for p in pieces - {"<unk>"}) and any("\u4e00" <= p <= "\u9fff" for p in pieces)
    (diff,) = report["differences"]
    assert set(diff["by_language"]) == {"en", "ru", "cmn"} and all("ci" in d["cer"] for d in diff["by_language"].values())
    md = (out / "compare.md").read_text()
    assert "CER per language" in md and "| input | cmn | en | ru | mean |" in md
    # the tables (speechrq asr tables) carry the per-language CER and each difference per language, equal to compare's
    from speechrq.studies.rpq_tables import write_tables

    t = write_tables([out], tmp_path / "tables" / "ml")
    (rpq,) = [r for r in t["table2"] if r["kind"] == "rpq"]
    for lang, got in rpq["cer_by_language"].items():
        assert got["cer"] == pytest.approx(report["rows"][rpq["name"]]["cer_by_language"][lang]["cer"])
        assert rpq["differences"][0]["by_language"][lang]["cer"] == diff["by_language"][lang]["cer"]  # the same bootstrap
    tables = (tmp_path / "tables" / "ml.md").read_text()
    assert "**Per language: CER**" in tables and "| input | cmn | en | ru | mean |" in tables and "**Per language: Δ CER" in tables
    # recorded when transcripts were read as a-z only, this comparison would have read other text: never reused
    identity = json.loads((out / "identity.json").read_text())
    del identity["transcripts"]
    (out / "identity.json").write_text(json.dumps(identity))
    with pytest.raises(SpeechrqError, match="transcripts"):
        from speechrq.studies.discrete_asr import compare

        compare(multilingual_corpus / "feature_stats.json", -1, multilingual_corpus, out, tmp_path / "asr.yaml", 16, [], [4],
                frames=3000, continuous=False, seeds=[0, 1], overrides=["data.output=char"], progress=False, beam=2)

"""``speechrq asr tables``: the RPQ paper's Tables I-IV, VII and Figure 6 laid out from finished comparisons."""

from __future__ import annotations

import json
import shutil

import pytest
from test_discrete_asr import write_asr_config

from speechrq.cli import main
from speechrq.data.batching import make_sampler


@pytest.mark.slow
def test_tables_lay_out_comparisons_as_the_paper_with_intervals_and_the_lr_peak(pretrain_corpus, tmp_path, capsys):
    """Two comparisons (k = 16 with RPQ at two α and RVQ; k = 24 k-means alone) over two training seeds on the 320-d
    log-Mel: Table I holds both k with an interval, Table II's differences equal compare.json's, Table III has the RVQ row,
    Table II takes the α nearest 0.125 on a tie, Table IV sorts α, Table VII's steps per epoch are the sampler's batches and the peak is the warm-up's end."""
    write_asr_config(tmp_path / "asr.yaml", steps=2)
    stats = str(pretrain_corpus / "feature_stats.json")
    common = ["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", stats, "--layer", "-1", "--corpus", str(pretrain_corpus),
              "--frames", "3000", "--test-split", "dev", "--mode", "ctc", "--beam", "1", "--seeds", "0,1", "--no-continuous", "--quiet",
              "--set", "optim.warmup_steps=2"]
    assert main([*common, "--out", str(tmp_path / "k16"), "--k", "16", "--pq", "", "--rpq", "2,2@0.25", "--alpha", "0.5",
                 "--rvq", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "k24"), "--k", "24", "--pq", "", "--rpq", ""]) == 0
    capsys.readouterr()
    prefix = tmp_path / "docs" / "tables"
    assert main(["asr", "tables", str(tmp_path / "k16"), str(tmp_path / "k24"), "--prefix", str(prefix), "--logs",
                 str(tmp_path / "logs")]) == 0
    import gzip

    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == 2 * 5 and "k16_rvq_k16_m2_seed1.jsonl.gz" in logs and "k24_kmeans_k24_m1_seed0.jsonl.gz" in logs
    log = gzip.decompress((tmp_path / "logs" / "k16_rvq_k16_m2_seed1.jsonl.gz").read_bytes())
    assert log == (tmp_path / "k16" / "runs" / "rvq_k16_m2" / "seed1" / "metrics.jsonl").read_bytes()
    t = json.loads(prefix.with_suffix(".json").read_text())
    assert t["training_seeds"] == [0, 1] and t["main"] == str(tmp_path / "k16") and t["alpha"] == 0.25
    assert [(r["k"], "against_smallest_k" in r) for r in t["table1"]] == [(16, False), (24, True)]
    d = t["table1"][1]["against_smallest_k"]
    assert abs(d["cer"]["difference"] - (t["table1"][1]["cer"] - t["table1"][0]["cer"])) < 1e-6 and d["cer"]["seeds"] == [2, 2]
    compare = json.loads((tmp_path / "k16" / "compare.json").read_text())
    by_pair = {(x["row"], x["baseline"]): x for x in compare["differences"]}
    assert [r["name"] for r in t["table2"]] == ["RPQ (M=2, α=0.25)"]
    for r in t["table2"]:
        (diff,) = r["differences"]
        assert diff["cer"] == by_pair[(r["name"], "k-means (k=16)")]["cer"]  # the same interval as the comparison's
    assert [r["name"] for r in t["table3"]] == ["RVQ (V=2)", "RPQ (M=2, α=0.25)"]
    assert [r["alpha"] for r in t["table4"]] == [0.25, 0.5] and sum(bool(r.get("best")) for r in t["table4"]) == 1
    assert next(r for r in t["table4"] if r.get("best")) == min(t["table4"], key=lambda r: r["cer_dev"])  # chosen on dev
    assert {d["family"]["name"] for r in t["table2"] for d in r["differences"]} == {"Table II"}
    # every row, interval and verdict is recomputed from the per-utterance errors shipped beside the JSON
    from speechrq.studies.evidence import read_archive, recheck_tables

    archive = read_archive(tmp_path / "docs" / "tables_errors.json.gz")
    assert set(archive["rows"]) == {r["name"] for r in t["table1"]} | {r["name"] for r in t["table3"] + t["table4"]}
    assert recheck_tables(t, archive) == []
    from speechrq.asr.data import UnitSource

    cuts = UnitSource(tmp_path / "k16" / "units" / "rvq_k16_m2" / "seed0" / "corpus").cuts("train").to_eager()
    sampler = make_sampler(cuts, 20.0, seed=0, num_buckets=4)
    sampler.set_epoch(0)
    batches = sum(1 for _ in sampler)
    assert {r["steps_per_epoch"] for r in t["table7"]} == {batches}  # duration batching: M does not change an epoch
    assert all(r["warmup_steps"] == 2 and r["peak_step"] == 2 and r["peak_epoch"] == 2 / batches for r in t["table7"])
    assert [r["name"] for r in t["figure6"]] == ["k-means (k=16)", "RPQ (M=2, α=0.25)"]
    md = prefix.with_suffix(".md").read_text()
    assert "**Table I" in md and "**Table IV: RPQ (M = 2) by α**" in md and "| RVQ (V=2) |" in md
    assert (tmp_path / "docs" / "tables_figure6.png").stat().st_size > 1000
    assert not any("s_per_step" in r for k in ("table1", "table2", "table3", "table4") for r in t[k])  # Figure 6 holds the times
    # a run recorded as trained beside another (jobs 2: --jobs 2, or an earlier speechrq's file): no Figure 6, the file
    # and page say why, and the figure an earlier call drew is not left beside the tables; nothing else changes
    kept = (tmp_path / "k16" / "compare.json").read_bytes()
    shared = json.loads(kept)
    shared["rows"]["k-means (k=16)"]["seeds"]["1"]["jobs"] = 2
    (tmp_path / "k16" / "compare.json").write_text(json.dumps(shared))
    assert main(["asr", "tables", str(tmp_path / "k16"), str(tmp_path / "k24"), "--prefix", str(prefix)]) == 0
    u = json.loads(prefix.with_suffix(".json").read_text())
    assert "figure6" not in u and "(`--jobs 2`)" in u["timings_removed"] and not (tmp_path / "docs" / "tables_figure6.png").exists()
    assert f"**Figure 6: training time per epoch**: not shown. {u['timings_removed']}" in prefix.with_suffix(".md").read_text()
    assert [r["differences"] for r in u["table2"]] == [r["differences"] for r in t["table2"]] and u["table7"] == t["table7"]
    (tmp_path / "k16" / "compare.json").write_bytes(kept)
    # the report's claims follow the intervals: flipping every verdict flips the claim
    import copy

    from speechrq.studies.report import AGAINST, HELD, tables_claims

    claims = {c["claim"]: c for c in tables_claims(t, "docs/x.json")}
    table2 = claims["PQ and RPQ units beat k-means units for ASR (Table II, wide source; against k-means (k=16))"]
    assert "RPQ (M=2, α=0.25)" in table2["number"]
    assert claims["more streams move the learning-rate peak to an earlier epoch (Table VII)"]["verdict"].startswith("does not apply")
    assert "Table IV" in " ".join(claims) and "Table I)" in " ".join(claims)
    for forced, want in (("better", HELD), ("worse", AGAINST)):
        flipped = copy.deepcopy(t)
        for r in flipped["table2"]:
            for d in r["differences"]:
                d["verdict"] = forced
        assert {c["claim"]: c for c in tables_claims(flipped, "x")}[table2["claim"]]["verdict"] == want
    # user mistakes: one line each, nothing written
    (tmp_path / "file").write_text("x")
    (tmp_path / "hand" ).mkdir()
    (tmp_path / "hand" / "compare.json").write_text(json.dumps({"training_seeds": [0], "test_split": "dev", "rows": {"x": {}}}))
    (tmp_path / "again" / "k16").mkdir(parents=True)
    (tmp_path / "again" / "k16" / "compare.json").write_text((tmp_path / "k16" / "compare.json").read_text())
    k16 = str(tmp_path / "k16")
    for args, said in (([str(tmp_path / "nothing"), "--prefix", str(prefix)], "no compare.json"),
                       ([str(tmp_path / "hand"), "--prefix", str(prefix)], "row 'x' has no input, quantizer, seeds"),
                       ([k16, "--prefix", str(tmp_path / "docs") + "/"], "a folder"),
                       ([k16, "--prefix", str(tmp_path / "file" / "p")], "is a file, not a folder"),
                       ([k16, "--prefix", str(prefix), "--logs", str(tmp_path / "file")], "--logs"),
                       ([k16, str(tmp_path / "again" / "k16"), "--prefix", str(prefix), "--logs", str(tmp_path / "l2")],
                        "share a folder name")):
        capsys.readouterr()
        assert main(["asr", "tables", *args]) == 2, args
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, (args, err)
    # what the tables read beside compare.json, edited by hand: one line naming the file and the key, nothing written

    def edited(path, change, said, argv):
        kept = path.read_bytes()
        path.write_text(change(path.read_text()))
        capsys.readouterr()
        assert main(argv) == 2, path
        err = capsys.readouterr().err
        assert f"{path}: {said}" in err and err.count("\n") == 1, err
        path.write_bytes(kept)

    fresh = tmp_path / "fresh"
    tables = ["asr", "tables", k16, str(tmp_path / "k24"), "--prefix", str(fresh)]
    errors = tmp_path / "k16" / "runs" / "rvq_k16_m2" / "seed1" / "errors_dev.json"
    edited(errors, lambda t: json.dumps(json.loads(t) | {"char_errors": ["3", *json.loads(t)["char_errors"][1:]]}),
           "char_errors[0]: expected a number, got '3'", tables)
    edited(errors, lambda t: json.dumps(json.loads(t) | {"chars": json.loads(t)["chars"][1:]}), "chars: expected one per utterance", tables)
    metrics = tmp_path / "k16" / "runs" / "kmeans_k16_m1" / "seed0" / "metrics.jsonl"
    edited(metrics, lambda t: t.replace('"lr": ', '"lr": "x", "was": ', 1), "line 1: lr: expected a number, got 'x'", tables)
    assert not fresh.with_suffix(".json").exists()


def test_a_resumed_comparison_reads_its_compare_json_checked(pretrain_corpus, tmp_path, capsys, monkeypatch):
    """`asr compare` reuses the runs compare.json records as finished: a record edited by hand (a number as a string, an
    object where the seeds were) is one line naming the file and key, not a traceback or a table of wrong numbers."""
    from speechrq.asr.search import SEARCH_VERSION

    monkeypatch.setattr("speechrq.identity.claim", lambda *a, **k: None)  # the folder's identity is not what is tried here
    write_asr_config(tmp_path / "asr.yaml", steps=2)
    argv = ["asr", "compare", str(tmp_path / "asr.yaml"), "--encoder", str(pretrain_corpus / "feature_stats.json"), "--layer", "-1",
            "--corpus", str(pretrain_corpus), "--frames", "3000", "--test-split", "dev", "--mode", "ctc", "--beam", "1", "--seeds", "0,1",
            "--no-continuous", "--quiet", "--out", str(tmp_path / "cmp"), "--k", "24", "--pq", "", "--rpq", ""]
    decoding = {"mode": "ctc", "beam": 1, "ctc_weight": 0.3, "search": SEARCH_VERSION}
    run = {"cer": 50.0, "wer": 80.0, "s_per_step": 0.1, "epoch_s": 1.0, "bits_per_second": 115.0, "steps": 2, "utterances": 10,
           "jobs": 1, "decoding": decoding, "final_loss": 3.0}
    row = {"input": "units", "quantizer": {"kind": "kmeans", "k": 24, "num_subspaces": 1}, "seeds": {"0": run, "1": run}}
    for seeds, said in (({"0": run | {"cer": "n/a"}, "1": run}, "rows.k-means (k=24).seeds.0.cer: expected a number, got 'n/a'"),
                        ({"0": run, "1": {k: v for k, v in run.items() if k != "s_per_step"}}, "rows.k-means (k=24).seeds.1: missing key 's_per_step'"),
                        ([run, run], "rows.k-means (k=24).seeds: expected an object, got a list")):
        shutil.rmtree(tmp_path / "cmp", ignore_errors=True)
        (tmp_path / "cmp").mkdir()
        (tmp_path / "cmp" / "compare.json").write_text(json.dumps({"test_split": "dev", "rows": {"k-means (k=24)": row | {"seeds": seeds}}}))
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'cmp' / 'compare.json'}: {said}" in err and err.count("\n") == 1, err

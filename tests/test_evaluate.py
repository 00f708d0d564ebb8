"""``speechrq evaluate`` end to end on the tiny corpus: probes, table, JSON, layer-weight figure, cache reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_encoders import make_checkpoint

from speechrq.cli import main
from speechrq.evaluate.probes import label_of
from speechrq.text import CHARS


def test_evaluate_writes_results_and_reuses_hidden_states(pretrain_corpus, tmp_path, capsys):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    args = ["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sid,er", "--out", str(tmp_path / "ev"), "--no-target-analysis",
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


def test_labels(pretrain_corpus):
    from speechrq.data.corpus import load_cuts

    cuts = list(load_cuts(pretrain_corpus, "dev"))
    assert all(label_of("sid", c) and label_of("er", c) for c in cuts)
    commands = [c for c in cuts if label_of("ic", c)]
    assert commands and all(len(label_of("ic", c)) == 3 for c in commands)
    assert all(set(label_of("asr", c)) <= set(CHARS) for c in cuts)


@pytest.mark.slow
def test_run_directories_every_n_curves_and_saved_probes(pretrain_corpus, tmp_path, capsys):
    from conftest import tiny_pretrain_config

    from speechrq.config import config_from_dict
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.trainer import train

    train(config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "stage0")), progress=False)
    out = tmp_path / "ev"
    args = ["evaluate", str(tmp_path / "stage0"), "--every", "4", "--random-baseline", "--corpus", str(pretrain_corpus),
            "--tasks", "sid", "--out", str(out), "--epochs", "1", "--lrs", "3e-3", "--no-target-analysis", "--quiet"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert {m: v["step"] for m, v in res["models"].items()} == {"stage0@4": 4, "stage0@8": 8, "random-init": None}
    assert (out / "curves.png").stat().st_size > 5000 and not (out / "target_tsne_phones.png").exists()
    # the saved probes are reused: nothing is trained or encoded again, the numbers are the same
    saved = {p: p.stat().st_mtime_ns for p in (out / "probes").rglob("*.json")}
    assert len(saved) == 2 + 3  # two checkpoints, and the random-init baseline's three weight draws (init seeds 0, 1, 2)
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in (out / "probes").rglob("*.json")} == saved
    assert again["models"] == {k: {**v, "utterances_encoded": 0} for k, v in res["models"].items()}
    # other settings train anew
    two_epochs = list(args)
    two_epochs[two_epochs.index("--epochs") + 1] = "2"
    assert main(two_epochs) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "probes").rglob("*.json")} != saved
    # without --every, a run directory means its newest checkpoint
    assert main(["evaluate", str(tmp_path / "stage0"), "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out",
                 str(tmp_path / "ev2"), "--epochs", "1", "--no-target-analysis", "--quiet"]) == 0
    assert list(json.loads((tmp_path / "ev2" / "results.json").read_text())["models"]) == ["stage0@8"]


def test_evaluate_errors_are_one_line(pretrain_corpus, tmp_path, capsys):
    base = ["--corpus", str(pretrain_corpus), "--out", str(tmp_path / "ev"), "--quiet"]
    assert main(["evaluate", str(tmp_path), *base]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    assert main(["evaluate", str(ckpt), "--tasks", "sid,xx", *base]) == 2
    assert "'xx' is not one of" in capsys.readouterr().err
    assert main(["evaluate", str(ckpt), "--lrs", "fast", *base]) == 2
    assert "--lrs: 'fast'" in capsys.readouterr().err


def test_a_hugging_face_folder_is_a_baseline(pretrain_corpus, tmp_path):
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    shape = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    WavLMModel(WavLMConfig(**shape)).save_pretrained(tmp_path / "wavlm")
    out = tmp_path / "ev"
    assert main(["evaluate", str(tmp_path / "wavlm"), "--corpus", str(pretrain_corpus), "--tasks", "sid,pr", "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["models"]["wavlm"]
    assert m["fingerprint"].startswith("hf-") and m["utterances_encoded"] > 0
    assert len(m["tasks"]["sid"]["layer_weights"]) == 4  # transformer input + 3 layers
    # cached states are on the 40 ms grid of speechrq encoders
    import numpy as np

    from speechrq.data.corpus import load_cuts
    from speechrq.features import num_frames

    cut = next(iter(load_cuts(pretrain_corpus, "dev")))
    states = np.load(Path(res["hidden_states"]) / m["fingerprint"] / f"{cut.id}.npy")  # what PR reads
    assert states.shape == (4, num_frames(cut.num_samples) // 4, 32)
    mean = np.load(Path(res["hidden_states"]) / m["fingerprint"] / f"{cut.id}.mean.npy")  # what SID reads: the same states' mean
    assert mean.dtype == np.float32 and np.allclose(mean, states.astype(np.float64).mean(1), rtol=1e-6, atol=1e-7)


def test_phone_recognition_probe_and_the_filterbank_baseline(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    args = ["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "pr", "--out", str(out),
            "--no-target-analysis", "--epochs", "8", "--lrs", "1e-2", "--quiet"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    fbank, model = res["models"]["fbank"]["tasks"]["pr"], res["models"]["run@0"]["tasks"]["pr"]
    assert fbank["metric"] == "per" and len(fbank["layer_weights"]) == 1 and len(model["layer_weights"]) == 5
    # a linear CTC over stacked log-Mel already recognises phones: far below the 100% of an empty output
    assert 0 < fbank["test"] < 90
    assert "PR PER ↓" in (out / "results.md").read_text()


def test_phone_labels_fold_timit_and_leave_out_silence():
    from lhotse import SupervisionSegment
    from lhotse.supervision import AlignmentItem

    from speechrq.evaluate.probes import fold_phone

    class Cut:
        supervisions = [SupervisionSegment("u", "u", 0.0, 1.0, alignment={"phone": [
            AlignmentItem(s, 0.1 * i, 0.1) for i, s in enumerate(["h#", "sh", "ix", "hv", "eh", "dcl", "d", "q", "ao", "pau", "epi"])]})]

    assert label_of("pr", Cut()) == ("sh", "ih", "hh", "eh", "d", "aa")
    assert fold_phone("zh") == "sh" and fold_phone("bcl") is None and fold_phone("aI") == "aI"  # espeak phones stay


def test_probe_seeds_report_the_mean_and_its_spread(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    args = ["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out", str(out), "--no-target-analysis",
            "--epochs", "2", "--lrs", "3e-3", "--probe-seeds", "3", "--quiet"]
    assert main(args) == 0
    sid = json.loads((out / "results.json").read_text())["models"]["run@0"]["tasks"]["sid"]
    assert len(sid["seed_tests"]) == 3 and abs(sid["test"] - sum(sid["seed_tests"]) / 3) < 1e-9
    assert len(set(sid["seed_tests"])) > 1 and sid["test_std"] > 0  # the seeds differ, so the spread is measured
    assert f"{sid['test']:.2f} ± {sid['test_std']:.2f}" in (out / "results.md").read_text()
    assert main([*args[:-3], "--probe-seeds", "0", "--quiet"]) == 2


def test_the_utterance_probe_on_pooled_states_is_superbs_frame_wise_probe():
    """Weighted sum, linear, then mean pool over valid frames (s3prl's order) equals the probe on utterance means."""
    import torch

    from speechrq.evaluate.probes import StateStore, UtteranceProbe
    from speechrq.frames import lengths_to_padding_mask

    torch.manual_seed(0)
    probe = UtteranceProbe(num_states=5, dim=8, hidden=6, num_classes=[3, 4])
    with torch.no_grad():
        probe.featurizer.weights.normal_()
    arrays = {f"u{i}": torch.randn(5, t, 8).half().numpy() for i, t in enumerate([7, 3, 11])}
    store = StateStore(arrays, list(arrays))
    ids = list(arrays)
    states, lens = store.batch(ids)
    x = probe.proj(probe.featurizer(states, lens))  # [B, T, hidden], frame by frame
    valid = (~lengths_to_padding_mask(lens, x.shape[1])).float()[..., None]
    expected = [head((x * valid).sum(1) / valid.sum(1)) for head in probe.heads]
    for got, want in zip(probe(store.pooled(ids)), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_probes_in_two_processes_equal_the_probes_in_this_one(pretrain_corpus, tmp_path, capsys):
    """Every (encoder, task, probe seed) in its own job: the same scores, layer weights and selected epochs as one after
    the other, each probe saved as its seeds finish, and --probe-jobs checked."""
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)

    def run(jobs: int, out) -> dict:
        assert main(["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "pr,sid", "--out", str(out),
                     "--no-target-analysis", "--epochs", "2", "--lrs", "3e-3", "--probe-seeds", "2", "--probe-jobs", str(jobs),
                     "--quiet"]) == 0
        return json.loads((out / "results.json").read_text())["models"]

    here, apart = run(1, tmp_path / "one"), run(2, tmp_path / "two")
    assert set(here) == set(apart) == {"run@0", "fbank"}
    for model in here:
        for task in ("pr", "sid"):
            a, b = here[model]["tasks"][task], apart[model]["tasks"][task]
            assert b["seed_tests"] == pytest.approx(a["seed_tests"], abs=1e-6) and b["epoch"] == a["epoch"]
            assert b["layer_weights"] == pytest.approx(a["layer_weights"], abs=1e-5)
    assert len(list((tmp_path / "two" / "probes").rglob("*.json"))) == 8  # one file per (encoder, task, probe seed)
    # a third seed trains that seed only: the first two are read back, the same numbers
    more = run(1, tmp_path / "two")
    assert len(list((tmp_path / "two" / "probes").rglob("*.json"))) == 8  # (--probe-seeds 2 again: nothing new)
    for model in here:
        assert more[model]["tasks"]["pr"]["seed_tests"] == apart[model]["tasks"]["pr"]["seed_tests"]
    assert main(["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "pr,sid", "--out",
                 str(tmp_path / "two"), "--no-target-analysis", "--epochs", "2", "--lrs", "3e-3", "--probe-seeds", "3", "--quiet"]) == 0
    three = json.loads((tmp_path / "two" / "results.json").read_text())["models"]
    assert len(list((tmp_path / "two" / "probes").rglob("*.json"))) == 12
    for model in here:
        assert three[model]["tasks"]["sid"]["seed_tests"][:2] == apart[model]["tasks"]["sid"]["seed_tests"]
    # another folder reusing this one's probes: seed 0 of each is copied in, nothing is encoded or trained
    assert main(["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "pr", "--out",
                 str(tmp_path / "reused"), "--no-target-analysis", "--epochs", "2", "--lrs", "3e-3", "--reuse-probes",
                 str(tmp_path / "two"), "--quiet"]) == 0
    assert "probes: 2 finished probe seed(s) with these encoders and settings copied from" in capsys.readouterr().out
    reused = json.loads((tmp_path / "reused" / "results.json").read_text())["models"]
    for model in here:
        assert reused[model]["utterances_encoded"] == 0 and not (tmp_path / "reused" / "hidden_states").exists()
        assert reused[model]["tasks"]["pr"]["test"] == apart[model]["tasks"]["pr"]["seed_tests"][0]
    assert len(list((tmp_path / "reused" / "probes").rglob("*.json"))) == 2
    for bad, why in ((tmp_path / "nowhere", "no such folder"), (tmp_path / "two" / "results.json", "a file, not a folder"),
                     (tmp_path / "r2", "is --out itself"), (pretrain_corpus, "no probes/ folder")):
        (tmp_path / "r2").mkdir(exist_ok=True)
        assert main(["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "pr", "--out", str(tmp_path / "r2"),
                     "--reuse-probes", str(bad), "--quiet"]) == 2
        assert why in capsys.readouterr().err
    assert main(["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out", str(tmp_path / "x"),
                 "--probe-jobs", "0", "--quiet"]) == 2


@pytest.mark.slow
def test_language_id_and_every_probe_scored_per_language(multilingual_corpus, tmp_path):
    out = tmp_path / "ev"
    ckpt = make_checkpoint(multilingual_corpus, tmp_path / "run", seed=0)
    assert main(["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(multilingual_corpus), "--tasks", "lid,asr,pr", "--out", str(out),
                 "--no-target-analysis", "--epochs", "6", "--lrs", "1e-2", "--quiet"]) == 0
    tasks = json.loads((out / "results.json").read_text())["models"]["fbank"]["tasks"]
    assert tasks["lid"]["metric"] == "accuracy" and tasks["asr"]["metric"] == "cer" and tasks["pr"]["metric"] == "per"
    assert tasks["lid"]["test"] > 50  # three languages (chance 33%): the voices' languages are told apart from log-Mel
    for t in ("lid", "asr", "pr"):
        by = tasks[t]["by_language"]
        assert set(by) == {"en", "ru", "cmn"}
        # the whole test set's score is a weighted mean of its languages' scores
        assert min(by.values()) - 1e-6 <= tasks[t]["test"] <= max(by.values()) + 1e-6
    table = (out / "results.md").read_text()
    assert "LID acc ↑" in table and "ASR CER ↓" in table and "Per language (test):" in table and "| cmn | en | ru |" in table


def test_language_id_needs_two_languages(pretrain_corpus, tmp_path, capsys):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    assert main(["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "lid", "--out", str(tmp_path / "ev"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "task lid needs utterances of two languages" in err and "English" in err and len(err.splitlines()) == 1


def test_the_asr_probe_reads_every_script_its_training_transcripts_hold(multilingual_corpus):
    from speechrq.data.corpus import load_cuts
    from speechrq.text import char_inventory

    cuts = list(load_cuts(multilingual_corpus, "train"))
    chars = char_inventory(label_of("asr", c) for c in cuts)
    assert any("\u0400" <= ch <= "\u04ff" for ch in chars) and any("\u4e00" <= ch <= "\u9fff" for ch in chars)
    assert {label_of("lid", c) for c in cuts} == {"en", "ru", "cmn"}


@pytest.mark.slow
def test_a_cache_budget_smaller_than_the_states_gives_the_same_results(pretrain_corpus, tmp_path, capsys):
    """Within --cache-max-gb, what does not fit is recomputed when read, in the batch the cache pass uses: the probes and
    target analyses are the same bits as with every state cached, and the cache stays within the budget."""
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    # --no-tsne: the target analysis's numbers are compared, its figures are not (they would take 90 of this test's seconds)
    common = ["--corpus", str(pretrain_corpus), "--tasks", "pr,sid", "--epochs", "2", "--lrs", "1e-2", "--quiet", "--probe-jobs", "1",
              "--no-tsne"]
    assert main(["evaluate", str(ckpt), *common, "--out", str(tmp_path / "full")]) == 0
    said = capsys.readouterr().out
    assert "hidden states: 1 encoder(s), reading frames of" in said and "caching all of it" in said
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    size = sum(f.stat().st_size for f in Path(full["hidden_states"]).rglob("*.npy"))
    for gb in (size / 3 / 1e9, 0.0):
        out = tmp_path / f"budget{gb:g}"
        assert main(["evaluate", str(ckpt), *common, "--out", str(out), "--cache-max-gb", f"{gb!r}"]) == 0
        said = capsys.readouterr().out
        assert "utterances are recomputed whenever a probe reads them" in said, said
        res = json.loads((out / "results.json").read_text())
        cached = sum(f.stat().st_size for f in Path(res["hidden_states"]).rglob("*.npy"))
        assert cached <= gb * 1e9 and (cached > 0) == (gb > 0)
        (name, m), = res["models"].items()
        assert m["tasks"] == full["models"][name]["tasks"]  # every score, lr sweep and layer weight
        assert res["target_quality"] == full["target_quality"]


def test_a_cache_budget_is_checked(pretrain_corpus, tmp_path, capsys):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    assert main(["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out", str(tmp_path / "ev"),
                 "--cache-max-gb", "-1", "--quiet"]) == 2
    assert "--cache-max-gb: a size in GB >= 0, got -1" in capsys.readouterr().err


def _checkpoint_of_other_statistics(corpus, root):
    """A tiny checkpoint whose log-Mel statistics are not the corpus's, as one pre-trained on another corpus holds."""
    from dataclasses import replace

    from conftest import tiny_pretrain_config

    from speechrq.checkpoint import save_checkpoint, step_dir
    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.features import FeatureStats
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    stats = FeatureStats.load(corpus / "feature_stats.json")
    other = replace(stats, mean=[m + 1.5 for m in stats.mean], std=[s * 2.0 for s in stats.std], source=None)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, root, train={"seed": 1}))
    return save_checkpoint(step_dir(root, 0), build_model(cfg, other).state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})


@pytest.mark.slow
def test_baselines_do_not_depend_on_which_encoders_are_listed_or_their_order(pretrain_corpus, tmp_path):
    """The filterbank and random-init baselines come from the corpus's own statistics and a named preset: listing two
    checkpoints of other statistics in either order, or one of them alone, gives the same baseline numbers."""
    a = make_checkpoint(pretrain_corpus, tmp_path / "a", seed=0)
    b = _checkpoint_of_other_statistics(pretrain_corpus, tmp_path / "b")

    def run(order, out) -> dict:
        assert main(["evaluate", *map(str, order), "--fbank-baseline", "--random-baseline", "--random-init-seeds", "2",
                     "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out", str(out), "--no-target-analysis",
                     "--epochs", "2", "--lrs", "3e-3", "--quiet"]) == 0
        return json.loads((out / "results.json").read_text())

    ab, ba = run([a, b], tmp_path / "ab"), run([b, a], tmp_path / "ba")  # each computed from scratch
    assert set(ab["models"]) == set(ba["models"]) == {"a@0", "b@0", "fbank", "random-init"}
    for row in ("fbank", "random-init"):
        assert ab["models"][row] == ba["models"][row], row  # every score, fingerprint, layer weight and each draw's score
    # one checkpoint alone: the same baseline encoders (fingerprints: weights and statistics), so their states and probes
    # are reused and nothing is encoded again
    only_b = run([b], tmp_path / "ba")
    for row in ("fbank", "random-init"):
        assert only_b["models"][row] == {**ab["models"][row], "utterances_encoded": 0}, row
    assert ab["baselines"] == ba["baselines"] == only_b["baselines"]
    stats = ab["baselines"]["feature_stats"]
    assert Path(stats["file"]) == pretrain_corpus / "feature_stats.json" and stats["source"]["split"] == "train"
    assert stats["training_parts"] == ["train"]
    assert ab["baselines"]["random-init"]["preset"] == "tiny" and ab["baselines"]["random-init"]["init_seeds"] == [0, 1]
    # the two checkpoints' own scores are theirs, whatever the order
    assert ab["models"]["b@0"]["tasks"] == ba["models"]["b@0"]["tasks"]


@pytest.mark.slow
def test_the_random_init_row_pools_several_weight_draws(pretrain_corpus, tmp_path):
    import statistics

    from speechrq.formats import eval_results
    from speechrq.io import file_fingerprint

    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    assert main(["evaluate", str(ckpt), "--random-baseline", "--corpus", str(pretrain_corpus), "--tasks", "sid", "--out", str(out),
                 "--no-target-analysis", "--epochs", "2", "--lrs", "3e-3", "--probe-seeds", "2", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == {"run@0", "random-init"}  # the draws make one row
    rule = res["baselines"]["random-init"]
    assert rule["preset"] == "tiny" and rule["init_seeds"] == [0, 1, 2] and len(set(rule["fingerprints"])) == 3  # the default
    assert res["baselines"]["feature_stats"]["sha256"] == file_fingerprint(pretrain_corpus / "feature_stats.json")
    row = res["models"]["random-init"]
    assert row["fingerprints"] == rule["fingerprints"] and row["step"] is None
    sid = row["tasks"]["sid"]
    assert len(sid["init_tests"]) == 3 and len(set(sid["init_tests"])) > 1  # each draw its own weights, its own score
    assert len(sid["seed_tests"]) == 3 * 2  # init seeds × probe seeds, all in the spread
    assert sid["test"] == pytest.approx(statistics.fmean(sid["seed_tests"])) and sid["test"] == pytest.approx(statistics.fmean(sid["init_tests"]))
    assert sid["test_std"] == pytest.approx(statistics.stdev(sid["seed_tests"])) and sid["test_std"] > 0
    assert len({p.parent.name for p in (out / "probes").rglob("sid.*.json")}) == 1 + 3  # each draw's probe kept on its own
    eval_results(res, "results.json")
    table = (out / "results.md").read_text()
    assert f"| random-init | {sid['test']:.2f} ± {sid['test_std']:.2f} |" in table
    assert "tiny preset" in table and "init seeds 0, 1, 2" in table and "feature_stats.json" in table
    assert "3 init seed(s) × 2 probe seed(s)" in table


def test_random_baseline_options_are_checked_in_one_line(pretrain_corpus, tmp_path, capsys):
    base = ["evaluate", str(tmp_path / "none"), "--corpus", str(pretrain_corpus), "--out", str(tmp_path / "ev"), "--quiet"]
    for extra, said in ((["--random-baseline", "--random-preset", "huge"], "--random-preset 'huge': not an encoder preset"),
                        (["--random-baseline", "--random-init-seeds", "0"], "--random-init-seeds: must be >= 1, got 0"),
                        (["--random-baseline", "--random-init-seeds", "-2"], "--random-init-seeds: must be >= 1, got -2"),
                        (["--random-preset", "small"], "--random-preset: set the random-init baseline, so give --random-baseline")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err


def test_a_results_table_made_before_issue_35_says_its_baselines_depend_on_the_order():
    from speechrq.evaluate.run import format_table

    old = json.loads((Path(__file__).parents[1] / "docs" / "ml_probes.json").read_text())
    assert "baselines" not in old and "fbank" in old["models"]
    assert "Baselines made before issue 35" in format_table(old)
    old["models"] = {k: v for k, v in old["models"].items() if k not in ("fbank", "random-init")}
    assert "before issue 35" not in format_table(old)  # no baseline, nothing to say


def _with_sexes(corpus, out):
    """``corpus`` again in ``out`` (its manifests only) with each speaker's sex in ``supervision.gender``: F and M by turns."""
    from lhotse import CutSet
    from lhotse.utils import fastcopy

    from speechrq.data.corpus import cut_files, load_cuts

    out.mkdir()
    speakers = sorted({c.supervisions[0].speaker for split in cut_files(corpus) for c in load_cuts(corpus, split)})
    sex = {s: "FM"[k % 2] for k, s in enumerate(speakers)}
    for split in cut_files(corpus):
        cuts = [fastcopy(c, supervisions=[fastcopy(c.supervisions[0], gender=sex[c.supervisions[0].speaker])])
                for c in load_cuts(corpus, split)]
        CutSet.from_cuts(cuts).to_file(out / f"cuts_{split}.jsonl.gz")
    return out


def test_the_sex_probe_reads_supervision_gender(pretrain_corpus, tmp_path, capsys):
    corpus = _with_sexes(pretrain_corpus, tmp_path / "sexes")
    from speechrq.data.corpus import load_cuts

    assert {label_of("sex", c) for c in load_cuts(corpus, "train")} == {"F", "M"}
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    assert main(["evaluate", str(ckpt), "--fbank-baseline", "--corpus", str(corpus), "--tasks", "sex,sid", "--out", str(out),
                 "--no-target-analysis", "--epochs", "1", "--lrs", "1e-2", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    for m in res["models"].values():
        assert m["tasks"]["sex"]["metric"] == "accuracy" and 0 <= m["tasks"]["sex"]["test"] <= 100
    assert "Sex acc ↑" in (out / "results.md").read_text()
    # a corpus without the label: one line saying where it comes from
    assert main(["evaluate", str(ckpt), "--corpus", str(pretrain_corpus), "--tasks", "sex", "--out", str(tmp_path / "ev2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "task sex needs speakers of both sexes" in err and "SPEAKERS.TXT" in err and len(err.splitlines()) == 1

"""``train.compile``: the compiled encoder computes what the eager one does, on batches of any shape, in one graph."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import tiny_pretrain_config, torch_threads


def close(eager: torch.Tensor, compiled: torch.Tensor) -> bool:
    """Equal up to float32 rounding: inductor fuses and reorders the element-wise work and the sums, so each element may
    differ by 1e-4 of itself plus 1e-6 of the tensor's largest value (a sum's rounding scales with its terms: a
    gradient element near 0 beside elements of 50 was off by 1.2e-5 on one CPU, 3.8e-7 of the largest)."""
    return torch.allclose(eager, compiled, rtol=1e-4, atol=max(1e-5, 1e-6 * float(eager.abs().max())))


@pytest.mark.slow
def test_compiled_blocks_equal_eager_on_batches_of_every_shape_one_graph_per_length_multiple():
    """Outputs of every layer and every gradient of the encoder blocks, compiled against eager, on three batch shapes
    (utterance count and length both change, padded utterances among them): one compiled graph per multiple of 32
    encoder frames the lengths reach (here one), not one per shape."""
    from speechrq.models.compiling import FRAME_MULTIPLE, compile_module, compiled_graphs
    from speechrq.models.conformer import speech_encoder

    torch.manual_seed(0)
    eager = speech_encoder("tiny", num_layers=2).encoder
    compiled = speech_encoder("tiny", num_layers=2).encoder
    compiled.load_state_dict(eager.state_dict())
    compile_module(compiled, pad_multiple=FRAME_MULTIPLE)
    before = compiled_graphs()
    g = torch.Generator().manual_seed(0)
    with torch_threads(1):
        for b, t in ((3, 40), (5, 57), (2, 33)):
            x = torch.randn(b, t, 96, generator=g)
            lens = torch.randint(t // 2, t + 1, (b,), generator=g)
            lens[0] = t
            outs = []
            for model in (eager, compiled):
                model.zero_grad()
                states = model(x, lens)
                sum((s * torch.linspace(-1, 1, 96)).square().sum() for s in states).backward()
                outs.append((states, {n: p.grad.clone() for n, p in model.named_parameters()}))
            (se, ge), (sc, gc) = outs
            valid = ~torch.arange(t)[None, :].ge(lens[:, None])
            for a, c in zip(se, sc):
                assert a.shape == c.shape == (b, t, 96)
                assert close(a[valid], c[valid]), (b, t)
            for name in ge:
                assert close(ge[name], gc[name]), (b, t, name)
    assert compiled_graphs() - before == 1  # 33 to 57 frames: one graph, of 64


@pytest.mark.slow
def test_a_compiled_pretraining_run_follows_the_eager_one_and_says_its_graph_count(pretrain_corpus, tmp_path, capsys,
                                                                                    monkeypatch):
    """``train.compile: true`` through the trainer: the logged losses of 2 steps match the eager run's, the checkpoint
    holds the eager module's keys (it loads into an eager model), and the run prints how many graphs it compiled.
    Dynamo traces the same graphs with the ``aot_eager`` backend here (inductor's code generation would take two
    minutes on 2 cores; its numbers are the test above's)."""
    from speechrq.models import compiling

    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    from speechrq.checkpoint import load_model_state
    from speechrq.config import config_from_dict
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.trainer import train

    runs = {}
    with torch_threads(1):
        for name, flag in (("eager", False), ("compiled", True)):
            cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
                pretrain_corpus, tmp_path / name, optim={"max_steps": 2}, train={"compile": flag}), source="test")
            runs[name] = train(cfg, progress=False)
    said = capsys.readouterr().out
    graphs = re.search(r"compiled: torch.compile compiled (\d+) graph\(s\) in this process", said)
    assert graphs and 1 <= int(graphs[1]) <= 2  # at most one per step, whatever the batch shapes
    losses = {n: [json.loads(line)["loss"] for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in runs}
    assert len(losses["eager"]) == 2
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)
    assert set(load_model_state(runs["compiled"], "cpu")) == set(load_model_state(runs["eager"], "cpu"))


def test_compile_is_a_config_key_that_a_resumed_run_may_change(pretrain_corpus, tmp_path):
    from speechrq.config import config_from_dict
    from speechrq.pretrain.config import RESUMABLE_CHANGES, PretrainConfig

    assert "train.compile" in RESUMABLE_CHANGES
    from speechrq.asr.trainer import RESUMABLE_CHANGES as ASR_RESUMABLE

    assert "train.compile" in ASR_RESUMABLE
    from speechrq.config import ConfigError

    with pytest.raises(ConfigError, match="compile"):
        config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path, train={"compile": "yes please"}), source="x.yaml")


@pytest.mark.slow
def test_a_compiled_asr_run_follows_the_eager_one(pretrain_corpus, tmp_path, capsys, monkeypatch):
    """``train.compile`` in discrete-unit ASR (encoder padded to 32 frames, decoder dynamic): 3 steps' losses match the
    eager run's and the run says its graph count (``aot_eager`` backend, as above). Dropout off: a compiled graph draws
    its dropout masks from the same generator in another order."""
    import yaml

    from speechrq.asr.config import ASRConfig
    from speechrq.asr.trainer import train_asr
    from speechrq.checkpoint import save_checkpoint, step_dir
    from speechrq.config import config_from_dict, config_to_dict, load_config
    from speechrq.features import FeatureStats
    from speechrq.models import compiling
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model
    from speechrq.units import QuantizerSpec
    from speechrq.units.run import encode_units, fit_units

    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "enc"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "enc", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    with torch_threads(1):
        fit_units(ckpt, 1, pretrain_corpus, tmp_path / "km", QuantizerSpec(k=24, niter=5), frames=2000, progress=False)
        encode_units(tmp_path / "km", pretrain_corpus, ["dev"], tmp_path / "km" / "enc", progress=False)
        for name, flag in (("eager", False), ("compiled", True)):
            raw = {"out_dir": str(tmp_path / name),
                   "data": {"units": str(tmp_path / "km" / "enc"), "train_split": "dev", "max_duration": 8.0, "vocab_size": 40},
                   "model": {"preset": "tiny", "dropout": 0.0}, "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": 3},
                   "train": {"seed": 0, "device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 3, "compile": flag}}
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
            train_asr(load_config(ASRConfig, tmp_path / f"{name}.yaml"), progress=False)
    said = capsys.readouterr().out
    assert re.search(r"compiled: torch.compile compiled \d+ graph\(s\) in this process", said), said
    losses = {n: [json.loads(line)["loss"] for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
              for n in ("eager", "compiled")}
    assert len(losses["eager"]) == 3 and losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)


@pytest.mark.slow
def test_compiled_corpus_passes_follow_the_eager_ones_kept_apart(pretrain_corpus, tmp_path, capsys, monkeypatch):
    """``evaluate --compile`` and ``units encode --compile``: the compiled encoder's hidden states equal the eager
    ones within float16 storage and float32 rounding, cached under a fingerprint of their own (a compiled pass never
    reads eager states, nor the reverse; the filterbank stays eager and shared), the units agree with the eager
    pass's, and each command prints its graph count (``aot_eager`` as above)."""
    from speechrq.cli import main
    from speechrq.data.corpus import load_cuts
    from speechrq.encoders import HiddenStateCache
    from speechrq.models import compiling

    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    from test_distributed import FIXTURE

    out = tmp_path / "eval"
    args = ["evaluate", str(FIXTURE), "--fbank-baseline", "--corpus", str(pretrain_corpus), "--tasks", "sid", "--epochs", "1",
            "--lrs", "3e-3", "--no-target-analysis", "--quiet", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--compile"]) == 0
    said = capsys.readouterr().out
    models = json.loads((out / "results.json").read_text())["models"]
    name = next(n for n in models if n != "fbank")
    assert f"--compile: the encoder blocks of {name} compiled" in said and "fbank stays eager" in said
    assert models[name]["compiled"] is True and "compiled" not in models["fbank"]
    assert f"Hidden states of {name} from torch.compile'd encoder blocks" in (out / "results.md").read_text()
    assert int(re.search(r"torch\.compile compiled (\d+) graph", said).group(1)) >= 1
    fp = models[name]["fingerprint"]
    assert fp.endswith("-compiled") and models[name]["utterances_encoded"] > 0  # computed, not read from the eager cache
    assert models["fbank"]["utterances_encoded"] == 0  # eager, cached by the first run
    root = next((out / "hidden_states").iterdir()) / "batch30s"
    eager, compiled = HiddenStateCache(root, fp.removesuffix("-compiled")), HiddenStateCache(root, fp)
    ids = [c.id for part in ("train", "dev", "test") for c in load_cuts(pretrain_corpus, part)]
    means = [(eager.get_mean(i), compiled.get_mean(i)) for i in ids]
    assert len(means) > 20 and all(a is not None and b is not None for a, b in means)
    for a, b in means:
        assert a.shape == b.shape and abs(a - b).max() <= 2e-3 * max(1.0, abs(a).max())

    units = []
    assert main(["units", "fit", "--encoder", str(FIXTURE), "--layer", "1", "--corpus", str(pretrain_corpus), "--k", "16",
                 "--frames", "3000", "--niter", "5", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    for flags, name in (([], "eager"), (["--compile"], "compiled")):
        assert main(["units", "encode", str(tmp_path / "q"), "--corpus", str(pretrain_corpus), "--splits", "dev", "--out",
                     str(tmp_path / name), "--quiet", *flags]) == 0
        units.append([line.split()[1:] for line in (tmp_path / name / "units_dev.txt").read_text().splitlines()])
    assert [json.loads((tmp_path / n / "identity.json").read_text())["compiled"] for n in ("eager", "compiled")] == [False, True]
    assert "--compile: the encoder blocks of" in capsys.readouterr().out
    same = sum(a == b for x, y in zip(*units) for a, b in zip(x, y))
    assert [len(x) for x in units[0]] == [len(x) for x in units[1]] and same >= 0.99 * sum(len(x) for x in units[0])

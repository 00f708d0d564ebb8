"""``speechrq bench pretrain`` (speechrq.pretrain.bench): the step it times, its FLOP count and the GEMM ceiling."""

from __future__ import annotations

import json

import pytest
import torch

from speechrq.cli import main
from speechrq.config import config_from_dict
from speechrq.features import FeatureStats
from speechrq.pretrain.bench import _Variant, bench_pretrain, format_bench, gemm_flops, step_gemms, time_gemms
from speechrq.pretrain.config import PretrainConfig


def _variant(preset: str = "tiny") -> _Variant:
    torch.manual_seed(0)
    cfg = config_from_dict(PretrainConfig, {"out_dir": "-", "data": {"corpus": "-"}, "model": {"preset": preset},
                                            "quantizer": {"num_codebooks": 2, "codebook_size": 64},
                                            "train": {"device": "cpu", "precision": "fp32"}}, source="test")
    feats, lens = torch.randn(2, 400, 80), torch.tensor([400, 300])  # padded: the second utterance is shorter
    return _Variant("best-rq", cfg, FeatureStats([0.0] * 80, [1.0] * 80, 700, 2), torch.device("cpu"), feats, lens)


@pytest.mark.parametrize("preset", ["tiny", "small"])  # small's CPU attention takes baddbmm
def test_the_step_s_gemms_are_every_product_the_flop_counter_counts(preset):
    """The recorded products, forward and backward, add up to the FLOPs torch's counter gives mm, addmm, bmm and baddbmm
    on the same step (a product counted twice, or one missed, breaks it); the heads' forward is among them."""
    from torch.utils.flop_counter import FlopCounterMode

    v = _variant(preset)
    v.step(0)
    gemms = step_gemms(v, 1)
    with FlopCounterMode(display=False) as counter:
        v.step(1)  # the same step index: the same masks, so the same shapes
    counted = {str(k): n for k, n in counter.get_flop_counts()["Global"].items()}
    want = sum(n for k, n in counted.items() if k.split(".")[-1] in ("mm", "addmm", "bmm", "baddbmm"))
    assert sum(n * gemm_flops(op, a, b) for (op, a, b, _), n in gemms.items()) == want > 0
    dim = v.model.encoder.config.dim
    assert any(len(a) == 2 and a[1] == dim and b == (dim, 2 * 64) for _, a, b, _ in gemms), sorted(gemms)  # [M, dim] x [dim, N V]
    flops, seconds = time_gemms({k: n for k, n in list(gemms.items())[:3]}, torch.device("cpu"), seconds=0.003)
    assert flops == sum(n * gemm_flops(op, a, b) for (op, a, b, _), n in list(gemms.items())[:3]) and seconds > 0


def test_bench_pretrain_reports_the_gemm_ceiling(capsys):
    """Its fields and how they follow from each other (no timing is compared: the cores may be shared)."""
    r = bench_pretrain("tiny", steps=1, warmup=1, batch_seconds=4.0, device="cpu", precision="fp32", num_codebooks=2,
                       codebook_size=64, gemm_ceiling=True)
    assert 0 < r["gemm_flop_share"] <= 1 and r["gemm_s"] > 0 and r["gemm_calls"] >= r["gemm_shapes"] > 0
    peak = r["peak_tflops"] * 1e12
    # the ceiling: the GEMMs in their own time, every other counted FLOP at the peak; so it never exceeds 1 where the
    # GEMMs alone are no faster than the peak
    other = (r["flops_per_step"] - r["gemm_flops"]) / peak
    assert r["mfu_ceiling"] == pytest.approx(r["flops_per_step"] / (r["gemm_s"] + other) / peak)
    assert r["gemm_peak_share"] > 1 or r["mfu_ceiling"] <= 1
    assert r["gemm_longer_than_step"] == (r["gemm_s"] > r["s_per_step"])
    assert r["gemm_peak_share"] == pytest.approx(r["gemm_flops"] / r["gemm_s"] / peak)
    assert r["gemm_time_share"] == pytest.approx(r["gemm_s"] / r["s_per_step"])
    assert "MFU ceiling" in format_bench(r)
    assert "mfu_ceiling" not in bench_pretrain("tiny", steps=1, warmup=0, batch_seconds=2.0, device="cpu", precision="fp32",
                                               num_codebooks=1, codebook_size=16)


@pytest.mark.parametrize("argv,words", [(["--steps", "0"], "--steps: must be >= 1"), (["--warmup", "-1"], "--warmup"),
                                        (["--batch-seconds", "0"], "--batch-seconds"), (["--batch-seconds", "inf"], "finite"),
                                        (["--codebook-size", "0"], "--codebook-size"), (["--layers", "1,2"], "only with --latent"),
                                        (["--latent", "--layers", "a,b"], "--layers: 'a,b'")])
def test_bad_bench_arguments_are_one_line(argv, words, capsys):
    assert main(["bench", "pretrain", *argv]) != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bench_pretrain_prints_json(capsys):
    assert main(["bench", "pretrain", "--steps", "1", "--warmup", "0", "--batch-seconds", "2", "--device", "cpu",
                 "--num-codebooks", "1", "--codebook-size", "16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["s_per_step"] > 0 and r["flops_per_step"] > 0 and r["codebooks"] == "1x16"

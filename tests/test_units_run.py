"""``units fit`` / ``units encode`` end to end: the corpus is streamed, never held, and a quantizer is never applied to an
encoder whose weights changed since it was fitted."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import pytest
import torch

from speechrq.data import corpus as corpus_module
from speechrq.errors import SpeechrqError
from speechrq.units import QuantizerSpec, UnitQuantizer

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v0"  # a tiny trained checkpoint (see tests/test_encoders.py)
MAX_DURATION = 2.0  # seconds of audio per batch (padded): a batch is a small share of the split
FRAMES_PER_SECOND = 25


@pytest.fixture(autouse=True)
def one_thread():
    """The encoder on one thread: on a shared 2-core machine many threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CutLedger:
    """How many cuts read from a manifest are alive at once (weak references: a cut counts until nothing holds it)."""

    def __init__(self):
        self.alive = self.peak = self.yielded = 0

    def born(self, cut) -> None:
        self.alive += 1
        self.yielded += 1
        if self.alive > self.peak:
            gc.collect()  # cuts in reference cycles are not held by anyone; count only the ones that are
            self.peak = max(self.peak, self.alive)
        weakref.finalize(cut, self.died)

    def died(self) -> None:
        self.alive -= 1


@pytest.fixture
def ledger(monkeypatch):
    """Every ``LazyCuts`` speechrq opens (``units fit`` / ``encode`` open theirs by name) reports to one ledger."""
    book = CutLedger()

    class CountedCuts(corpus_module.LazyCuts):
        def __iter__(self):
            for cut in super().__iter__():
                book.born(cut)
                yield cut

    monkeypatch.setattr(corpus_module, "LazyCuts", CountedCuts)
    return book


def manifest(corpus: Path, split: str) -> list:
    """The split's cuts read by lhotse itself (not through speechrq's LazyCuts, which the ledger counts): to size the bounds."""
    from lhotse import CutSet

    return list(CutSet.from_file(next(corpus.glob(f"cuts_{split}.jsonl*"))))


def batch_bound(cuts) -> int:
    """The most cuts one batch of MAX_DURATION seconds can hold, plus the one read ahead and the one in hand."""
    return int(MAX_DURATION / min(c.duration for c in cuts)) + 2


def batch_frames(cuts) -> float:
    """The most frames one batch can hold: MAX_DURATION seconds, or one utterance longer than that alone."""
    return max(MAX_DURATION, max(c.duration for c in cuts)) * FRAMES_PER_SECOND


def test_units_fit_and_encode_stream_the_manifest_and_quantize_batch_by_batch(tiny_corpus, ledger, tmp_path, monkeypatch):
    """A regression that materialises the split (``list(cuts)``, ``CutSet.from_cuts(cuts)``, ``to_eager``) holds every
    cut at once; one that concatenates the split's frames before quantizing hands the quantizer more than a batch."""
    from speechrq.units.run import encode_units, fit_units

    cuts = manifest(tiny_corpus, "dev")
    bound, most_frames = batch_bound(cuts), batch_frames(cuts)
    assert len(cuts) > 4 * bound, "the split must be many batches long for the bound to mean anything"
    rows = []
    encode = UnitQuantizer.encode

    def counted_encode(self, x, *args, **kwargs):
        rows.append(len(x))
        return encode(self, x, *args, **kwargs)

    monkeypatch.setattr(UnitQuantizer, "encode", counted_encode)

    q = fit_units(FIXTURE, 1, tiny_corpus, tmp_path / "km", QuantizerSpec(k=8, niter=2), frames=400, split="dev",
                  max_duration=MAX_DURATION, progress=False)
    assert 200 < q.source["sample_frames"] < 700  # the sample, not the split, is what the fit loads
    summary = encode_units(tmp_path / "km", tiny_corpus, ["dev"], tmp_path / "units", max_duration=MAX_DURATION, progress=False)
    n = summary["splits"]["dev"]["utterances"]
    assert n > 4 * bound and ledger.yielded >= 3 * n  # sampled, encoded, written: three passes over the manifest
    assert ledger.peak <= bound, f"{ledger.peak} cuts alive at once (a batch holds at most {bound})"
    assert rows and max(rows) <= most_frames + 1, f"the quantizer got {max(rows)} frames in one call (a batch holds {most_frames})"
    assert sum(rows) == summary["splits"]["dev"]["encoded_frames"]


def test_the_feature_sample_holds_one_batch_plus_one_shard(tiny_corpus, ledger, tmp_path):
    """Keeping every frame (fraction 1), no shard holds more than ``shard_frames`` plus one batch: the frames go to disk
    as they come (a regression that gathers every frame first writes one shard of the whole split)."""
    from speechrq.encoders import EncoderLayer
    from speechrq.units.sample import load_sample, sample_features

    shard, cuts = 150, manifest(tiny_corpus, "dev")
    state = sample_features(EncoderLayer(FIXTURE, 0), corpus_module.LazyCuts(tiny_corpus, "dev"), tmp_path / "sample", fraction=1.0,
                            max_duration=MAX_DURATION, shard_frames=shard, progress=False)
    sizes = [s["frames"] for s in state["shards"]]
    assert len(sizes) >= 4 and max(sizes) < shard + batch_frames(cuts), sizes
    assert sum(sizes) == len(load_sample(tmp_path / "sample")) == state["frames"]
    assert abs(state["frames"] - state["corpus_frames"]) <= len(cuts)  # fraction 1: every frame (durations round per cut)
    assert ledger.peak <= batch_bound(cuts)


def test_units_encode_refuses_a_quantizer_fitted_on_weights_that_changed_since(tiny_corpus, tmp_path, capsys):
    """The checkpoint's model.safetensors is rewritten after fitting (one weight of one block nudged): encoding
    with the old quantizer is refused in one line saying the weights changed, and nothing is written."""
    from safetensors.torch import load_file, save_file

    from speechrq.cli import main
    from speechrq.units.run import encode_units, fit_units

    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, ckpt)
    fit_units(ckpt, 1, tiny_corpus, tmp_path / "km", QuantizerSpec(k=8, niter=2), frames=200, split="dev",
              max_duration=MAX_DURATION, progress=False)
    weights = load_file(ckpt / "model.safetensors")
    name = next(k for k in sorted(weights) if k.startswith("encoder.") and weights[k].is_floating_point() and weights[k].dim() == 2)
    weights[name] = weights[name].clone()
    weights[name][0, 0] += 1e-3
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SpeechrqError, match="weights changed"):
        encode_units(tmp_path / "km", tiny_corpus, ["dev"], tmp_path / "units", max_duration=MAX_DURATION, progress=False)
    assert main(["units", "encode", str(tmp_path / "km"), "--corpus", str(tiny_corpus), "--splits", "dev", "--out",
                 str(tmp_path / "units"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "weights changed" in err and err.strip().count("\n") == 0 and "Traceback" not in err
    assert not any((tmp_path / "units").rglob("*.npy"))


def test_the_stacked_filterbank_is_a_wide_unit_source(pretrain_corpus, tmp_path, capsys):
    """A corpus's feature_stats.json as --encoder: normalised log-Mel stacked onto the 40 ms grid, 320 dimensions,
    split by PQ into streams of 40; exactly the filterbank baseline's state; any layer but -1 refused in one line."""
    from speechrq.cli import main
    from speechrq.encoders import EncoderLayer, FilterbankEncoder
    from speechrq.features import FeatureNormalizer, FeatureStats
    from speechrq.units.encode import load_units, manifest_path
    from speechrq.units.run import encode_units, fit_units

    stats = pretrain_corpus / "feature_stats.json"
    lay = EncoderLayer(stats, -1)
    assert lay.dim == 320 and lay.min_samples == 560
    fbank = FilterbankEncoder(FeatureNormalizer.from_stats(FeatureStats.load(stats)))
    assert lay.fingerprint == fbank.fingerprint
    audio, lens = torch.randn(2, 16000), torch.tensor([16000, 9000])
    (states,), frames = fbank(audio, lens)
    got, got_lens = lay(audio, lens)
    assert torch.equal(got, states) and torch.equal(got_lens, frames) and got.shape[-1] == 320
    q = fit_units(stats, -1, pretrain_corpus, tmp_path / "pq", QuantizerSpec(kind="pq", k=8, num_subspaces=8, niter=2), frames=400,
                  split="dev", max_duration=MAX_DURATION, progress=False)
    assert q.dim == 320 and q.num_streams == 8
    encode_units(tmp_path / "pq", pretrain_corpus, ["dev"], tmp_path / "units", max_duration=MAX_DURATION, progress=False)
    cuts = list(load_units(manifest_path(tmp_path / "units", "dev")))
    first = cuts[0].load_custom("units")
    assert first.shape[1] == 8 and first.max() < 8 and abs(first.shape[0] - round(cuts[0].duration * FRAMES_PER_SECOND)) <= 1
    assert (first == q.encode(lay(*_audio(cuts[0]))[0][0].numpy())).mean() > 0.99  # batch padding moves a float's last bits
    assert main(["units", "fit", "--encoder", str(stats), "--layer", "0", "--corpus", str(pretrain_corpus), "--out",
                 str(tmp_path / "x"), "--frames", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the filterbank has one state, layer -1" in err and err.strip().count("\n") == 0


def _audio(cut):
    samples = torch.as_tensor(cut.load_audio()[0], dtype=torch.float32)
    return samples[None], torch.tensor([samples.numel()])


def _tiny_wavlm(path: Path) -> Path:
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(path)
    return path


def test_a_20_ms_source_keeps_20_ms_frames_through_encode_manifests_asr_batches_and_transcribe(pretrain_corpus, tmp_path, capsys):
    """A Hugging Face model's units come at its own 20 ms (the RPQ paper's 50 Hz), not averaged to 40 ms: the sample,
    units.json, the manifest's frame shift and frame counts, the ASR batches, the trained model's encoder layer, the
    bits/s and transcription all carry 20 ms; --frame-ms 40 averages pairs (half the frames), and a shift the source
    cannot make is refused in one line."""
    import yaml
    from lhotse import CutSet

    from speechrq.asr.data import ASRBatches, UnitSource
    from speechrq.asr.decode import Recognizer
    from speechrq.asr.trainer import train_asr
    from speechrq.asr.config import ASRConfig
    from speechrq.cli import main
    from speechrq.config import load_config
    from speechrq.encoders import EncoderLayer
    from speechrq.units.encode import load_units, manifest_path
    from speechrq.units.run import encode_units, fit_units

    hf = _tiny_wavlm(tmp_path / "wavlm")
    spec = QuantizerSpec(k=8, niter=2)
    q = fit_units(hf, 1, pretrain_corpus, tmp_path / "km20", spec, frames=400, split="dev", max_duration=MAX_DURATION, progress=False)
    assert q.source["frame_ms"] == 20
    q40 = fit_units(hf, 1, pretrain_corpus, tmp_path / "km40", spec, frames=400, split="dev", max_duration=MAX_DURATION,
                    progress=False, frame_ms=40)
    assert q40.source["frame_ms"] == 40
    for name in ("km20", "km40"):
        encode_units(tmp_path / name, pretrain_corpus, ["train", "dev"], tmp_path / name / "enc", max_duration=MAX_DURATION,
                     progress=False)
    cuts20 = {c.id: c for c in load_units(manifest_path(tmp_path / "km20" / "enc", "dev"))}
    cuts40 = {c.id: c for c in load_units(manifest_path(tmp_path / "km40" / "enc", "dev"))}
    for cid, c in list(cuts20.items())[:5]:
        u20, u40 = c.load_custom("units"), cuts40[cid].load_custom("units")
        assert c.custom["units"].frame_shift == 0.02 and cuts40[cid].custom["units"].frame_shift == 0.04
        assert abs(u20.shape[0] - c.duration / 0.02) <= 2 and abs(u40.shape[0] - c.duration / 0.04) <= 1
        assert abs(c.custom["units"].duration - c.duration) <= 0.04  # lhotse sees the array span the audio
    # ASR batches hold one input per 20 ms frame
    source = UnitSource(tmp_path / "km20" / "enc")
    assert source.encoder[2] == 20
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "asr"), "data": {"units": str(source.dir), "max_duration": 20.0, "num_buckets": 2, "vocab_size": 40},
        "model": {"preset": "tiny"}, "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": 2},
        "train": {"device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 2}}))
    train_asr(load_config(ASRConfig, tmp_path / "asr.yaml"), progress=False)
    rec = Recognizer(tmp_path / "asr")
    some = list(cuts20.values())[:3]
    batch = ASRBatches("units", rec.tokenizer)[CutSet.from_cuts(some)]
    assert batch["input_lens"].tolist() == [c.load_custom("units").shape[0] for c in batch["cuts"]]
    # transcription reads the encoder at the units' 20 ms: the same frames, the same units as the manifest
    assert rec.spec["frame_ms"] == 20 and rec.layer().frame_ms == 20
    cut = some[0]
    states, lens = rec.layer()(*_audio(cut))
    assert int(lens[0]) == cut.load_custom("units").shape[0]
    assert (rec.quantizer().encode(states[0, : int(lens[0])].numpy()) == cut.load_custom("units")).mean() > 0.99
    assert isinstance(rec.transcribe([cut.load_audio()[0]], beam=2)[0], str)
    # shifts the source cannot make: one line each
    for enc, ms in ((hf, 30), (pretrain_corpus / "feature_stats.json", 20)):
        capsys.readouterr()
        assert main(["units", "fit", "--encoder", str(enc), "--layer", "-1", "--corpus", str(pretrain_corpus), "--out",
                     str(tmp_path / "bad"), "--frames", "100", "--frame-ms", str(ms), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"frame shift {ms} ms" in err and err.strip().count("\n") == 0
    assert EncoderLayer(hf, 0, 60).frame_ms == 60  # three 20 ms frames averaged
    # a shift longer than some utterances: they are named before anything is written, never encoded as empty units
    assert EncoderLayer(hf, 0, 2000).min_samples == 400 + 99 * 320
    for args in (["units", "fit", "--frames", "100", "--k", "4"], ["asr", "compare", str(tmp_path / "asr.yaml"), "--k", "4"]):
        capsys.readouterr()
        assert main([*args, "--encoder", str(hf), "--layer", "0", "--corpus", str(pretrain_corpus), "--out", str(tmp_path / "long"),
                     "--frame-ms", "2000", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "too short for encoder layer 0" in err and err.strip().count("\n") == 0 and not (tmp_path / "long").exists()

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
    batch = ASRBatches(rec.data(), rec.tokenizer)[CutSet.from_cuts(some)]
    assert batch["input_lens"].tolist() == [c.load_custom("units").shape[0] for c in batch["cuts"]]
    # transcription reads the encoder at the units' 20 ms: the same frames, the same units as the manifest
    assert rec.spec["frame_ms"] == 20 and rec.layer().frame_ms == 20
    cut = some[0]
    states, lens = rec.layer()(*_audio(cut))
    assert int(lens[0]) == cut.load_custom("units").shape[0]
    assert (rec.data(need_units=False).quantizer.encode(states[0, : int(lens[0])].numpy()) == cut.load_custom("units")).mean() > 0.99
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


# ---------------------------------------------------------------- outputs others read (issue 34, point 9)


def _small_corpus(tiny_corpus, out: Path, splits: dict[str, tuple[str, int]]) -> Path:
    """A copy of the tiny corpus holding only ``splits`` (name -> the tiny corpus's split and how many of its cuts), as
    lhotse writes them."""
    from lhotse import CutSet

    shutil.copytree(tiny_corpus, out)
    made = {name: CutSet.from_file(out / f"cuts_{split}.jsonl").subset(first=n) for name, (split, n) in splits.items()}
    for p in out.glob("cuts_*.jsonl*"):
        p.unlink()
    for name, cuts in made.items():
        cuts.to_file(out / f"cuts_{name}.jsonl")
    return out


def _lhotse_units(manifest: Path) -> dict:
    """``{id: units}`` read by lhotse alone, as a user's script would."""
    from lhotse import CutSet

    return {c.id: c.load_custom("units") for c in CutSet.from_file(manifest)}


def _kaldi(path: Path) -> dict:
    """A Kaldi text file read by plain Python."""
    return {line.split()[0]: [int(x) for x in line.split()[1:]] for line in path.read_text(encoding="utf-8").splitlines()}


RELOCATE = "from speechrq.data.corpus import relocate; relocate({!r})"  # the documented one-liner (docs/guide/units.md)


def _run_documented_relocate(folder: Path, cwd: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", RELOCATE.format(str(folder))], cwd=cwd, check=True)


def _fit_small(tiny_corpus, tmp_path: Path, splits: dict[str, tuple[str, int]]) -> Path:
    from speechrq.units.run import fit_units

    corpus = _small_corpus(tiny_corpus, tmp_path / "corpus", splits)
    fit_units(FIXTURE, 1, corpus, tmp_path / "km", QuantizerSpec(k=8, niter=2), frames=200, split=next(iter(splits)),
              max_duration=MAX_DURATION, progress=False)
    return corpus


@pytest.mark.parametrize("splits", [{"train": ("train", 6), "dev": ("dev", 3)},
                                    {"train_10min": ("train", 4), "train_1h": ("train", 6), "valid": ("dev", 3)}])
def test_units_encode_without_splits_encodes_every_split_the_corpus_has(splits, tiny_corpus, tmp_path, monkeypatch, capsys):
    """Issue 34.9: ``units encode Q --corpus C --out D`` on a corpus without a test split was refused ("has no split
    'test'"): the default follows the corpus (its own split names too), and ``--splits`` naming nothing is one line."""
    import json

    from speechrq.cli import main

    corpus = _fit_small(tiny_corpus, tmp_path, splits)
    monkeypatch.chdir(tmp_path)
    assert main(["units", "encode", "km", "--corpus", "corpus", "--out", "enc", "--max-duration", str(MAX_DURATION), "--quiet"]) == 0
    summary = json.loads((tmp_path / "enc" / "encode.json").read_text())
    names = {p.name[len("cuts_"):].split(".jsonl")[0] for p in corpus.glob("cuts_*")}
    assert set(summary["splits"]) == names == {p.name[len("cuts_"):-len(".jsonl.gz")] for p in (tmp_path / "enc").glob("cuts_*")}
    assert {name: s["utterances"] for name, s in summary["splits"].items()} == {name: n for name, (_, n) in splits.items()}
    for empty in (" , ", ""):
        capsys.readouterr()
        assert main(["units", "encode", "km", "--corpus", "corpus", "--out", "enc2", "--splits", empty, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "names no split" in err and err.strip().count("\n") == 0 and not (tmp_path / "enc2").exists()


def test_an_encoded_corpus_reads_without_speechrq_from_any_directory_and_after_a_move(tiny_corpus, tmp_path, monkeypatch):
    """Issue 34.9: the manifests stored ``storage_path: "arrays"``: lhotse alone (``CutSet.from_file``, then
    ``cut.load_custom("units")``) failed from any directory but D with FileNotFoundError 'arrays/<id>.npy'. Now the
    arrays, the Kaldi text and the corpus's audio open with lhotse, numpy and plain Python from anywhere; a moved folder
    reads in speechrq as it is, in lhotse once the documented one-liner rewrote it, with unchanged fingerprints."""
    import json

    import numpy as np

    from speechrq.cli import main
    from speechrq.identity import manifest_fingerprint
    from speechrq.units.encode import load_units

    corpus = _fit_small(tiny_corpus, tmp_path, {"train": ("train", 10), "dev": ("dev", 5), "test": ("test", 3)})
    monkeypatch.chdir(tmp_path)
    assert main(["units", "encode", "km", "--corpus", "corpus", "--out", "enc", "--splits", "train,dev", "--max-duration",
                 str(MAX_DURATION), "--quiet"]) == 0
    enc = tmp_path / "enc"
    summary = json.loads((enc / "encode.json").read_text())
    assert summary["splits"]["train"]["utterances"] == 10 and summary["splits"]["dev"]["utterances"] == 5
    # what was written, read back from its own files (numpy) and by speechrq
    arrays = {p.stem: np.load(p) for p in (enc / "arrays").glob("*.npy")}
    assert len(arrays) == 15
    fingerprints = {s: manifest_fingerprint(enc / f"cuts_{s}.jsonl.gz") for s in ("train", "dev")}

    def same_everywhere(folder: Path) -> None:
        for split in ("train", "dev"):
            got = _lhotse_units(folder / f"cuts_{split}.jsonl.gz")  # lhotse alone, from the current directory
            assert len(got) == summary["splits"][split]["utterances"]
            for uid, units in got.items():
                assert units.dtype == np.uint16 and np.array_equal(units, arrays[uid])
            text = _kaldi(folder / f"units_{split}.txt")  # Kaldi text, plain Python
            assert set(text) == set(got) and all(text[u] == got[u][:, 0].tolist() for u in got)
        from lhotse import CutSet

        cut = next(iter(CutSet.from_file(folder / "cuts_dev.jsonl.gz")))
        assert cut.load_audio().shape[-1] == cut.num_samples  # the corpus's audio, by lhotse alone too
        assert Path(cut.units.array.storage_path).is_absolute()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    same_everywhere(enc)
    # moved and renamed: speechrq reads it as it is; the documented one-liner rewrites it for lhotse; fingerprints stay
    moved = tmp_path / "moved units"
    shutil.move(enc, moved)
    assert not enc.exists()
    for split in ("train", "dev"):
        assert manifest_fingerprint(moved / f"cuts_{split}.jsonl.gz") == fingerprints[split]
        assert all(np.array_equal(c.load_custom("units"), arrays[c.id]) for c in load_units(moved / f"cuts_{split}.jsonl.gz"))
    _run_documented_relocate(moved, elsewhere)
    same_everywhere(moved)
    from lhotse import CutSet

    assert all(c.units.array.storage_path == str(moved.resolve() / "arrays") for c in CutSet.from_file(moved / "cuts_train.jsonl.gz"))
    for split in ("train", "dev"):
        assert manifest_fingerprint(moved / f"cuts_{split}.jsonl.gz") == fingerprints[split]
    # a rerun into the moved folder adds nothing, reuses everything
    before = {p.name: p.stat().st_mtime_ns for p in (moved / "arrays").iterdir()}
    assert main(["units", "encode", str(tmp_path / "km"), "--corpus", str(corpus), "--out", str(moved), "--splits", "train,dev",
                 "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (moved / "arrays").iterdir()} == before
    # moved again, not rewritten: a command that adds a split rewrites the folder's other manifests first, for lhotse too
    twice = tmp_path / "moved twice"
    shutil.move(moved, twice)
    assert main(["units", "encode", str(tmp_path / "km"), "--corpus", str(corpus), "--out", str(twice), "--splits", "test",
                 "--max-duration", str(MAX_DURATION), "--quiet"]) == 0
    for split, n in (("train", 10), ("dev", 5), ("test", 3)):
        cuts = list(CutSet.from_file(twice / f"cuts_{split}.jsonl.gz"))
        assert len(cuts) == n and all(c.units.array.storage_path == str(twice.resolve() / "arrays") for c in cuts)
        assert all(c.load_custom("units").shape[1] == 1 for c in cuts)
    assert json.loads((twice / "paths.json").read_text())["root"] == str(twice.resolve())
    for split in ("train", "dev"):
        assert manifest_fingerprint(twice / f"cuts_{split}.jsonl.gz") == fingerprints[split]
    moved = twice
    # an ASR checkpoint trained on them opens with safetensors, sentencepiece, torch and json alone; its run resumes after the
    # units folder moved again (not rewritten): the units manifest's fingerprint, one of the run's inputs, did not move
    import sentencepiece as spm
    import yaml
    from safetensors.torch import load_file

    from speechrq.asr.config import ASRConfig
    from speechrq.asr.trainer import TOKENIZER_KEY, train_asr
    from speechrq.config import load_config

    def asr_config(units: Path, steps: int) -> Path:
        path = tmp_path / f"asr{steps}.yaml"
        path.write_text(yaml.safe_dump({
            "out_dir": str(tmp_path / "asr"), "data": {"units": str(units), "max_duration": 20.0, "num_buckets": 1, "vocab_size": 30},
            "model": {"preset": "tiny"}, "optim": {"lr": 2e-3, "warmup_steps": 1, "max_steps": steps},
            "train": {"device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 1}}))
        return path

    last = train_asr(load_config(ASRConfig, asr_config(moved, 1)), progress=False)
    ckpt = tmp_path / "asr checkpoint"
    shutil.copytree(last, ckpt)
    state = load_file(ckpt / "model.safetensors")
    tokens = spm.SentencePieceProcessor(model_proto=bytes(state[TOKENIZER_KEY].numpy()))
    assert tokens.get_piece_size() > 2 and tokens.decode(tokens.encode("hello")) == "hello"
    assert json.loads((ckpt / "meta.json").read_text())["kind"] == "speechrq-asr"
    assert isinstance(torch.load(ckpt / "trainer.pt", weights_only=True), dict)
    from speechrq.asr.decode import Recognizer
    from speechrq.io import file_fingerprint

    weights = file_fingerprint(moved / "quantizer" / "units.safetensors")
    older = tmp_path / "older checkpoint"  # as saved before the quantizer's fingerprint was recorded: read where it is
    shutil.copytree(ckpt, older)
    meta = json.loads((older / "meta.json").read_text())
    del meta["model"]["quantizer_fingerprint"]
    (older / "meta.json").write_text(json.dumps(meta))
    assert Recognizer(older).quantizer_fingerprint() == weights == Recognizer(ckpt).quantizer_fingerprint()
    shutil.move(moved, tmp_path / "moved again")
    # what a decode with --units checks units made elsewhere against: known after the training units moved
    assert Recognizer(ckpt).quantizer_fingerprint() == weights
    with pytest.raises(SpeechrqError, match="no longer there"):
        Recognizer(older).quantizer_fingerprint()
    assert train_asr(load_config(ASRConfig, asr_config(tmp_path / "moved again", 2)), resume=True, progress=False).name == "step_00000002"


def test_a_synthesized_corpus_reads_with_lhotse_alone_from_any_directory_and_after_a_move(tiny_corpus, tmp_path, monkeypatch):
    """Issue 34.9: ``speechrq synth`` stored audio paths relative to the corpus folder, so ``CutSet.from_file(...)`` then
    ``cut.load_audio()`` failed from any other directory. Now they are absolute; a moved corpus reads in speechrq as it
    is (its own audio, the same fingerprint) and in lhotse once the documented one-liner rewrote it."""
    from lhotse import CutSet

    from speechrq.data.corpus import cut_files, load_cuts
    from speechrq.identity import corpus_fingerprint

    monkeypatch.chdir(tmp_path)  # neither the corpus folder nor its parent
    for path in cut_files(tiny_corpus).values():
        cuts = list(CutSet.from_file(path))
        assert cuts and all(Path(c.recording.sources[0].source).is_file() for c in cuts)
        assert cuts[0].load_audio().shape == (1, cuts[0].num_samples)
    fingerprint = corpus_fingerprint(tiny_corpus)
    copy, moved = tmp_path / "copy", tmp_path / "moved corpus"
    shutil.copytree(tiny_corpus, copy)
    shutil.move(copy, moved)
    inside = str(moved.resolve()) + "/"
    assert corpus_fingerprint(moved) == fingerprint
    assert all(c.recording.sources[0].source.startswith(inside) for c in load_cuts(moved, "dev"))  # its own audio, not the original's
    _run_documented_relocate(moved, tmp_path)
    for path in cut_files(moved).values():
        cuts = list(CutSet.from_file(path))
        assert all(c.recording.sources[0].source.startswith(inside) and Path(c.recording.sources[0].source).is_file() for c in cuts)
    assert cuts[0].load_audio().shape == (1, cuts[0].num_samples)
    assert corpus_fingerprint(moved) == fingerprint


def test_a_default_split_follows_the_corpus_names(tiny_corpus, tmp_path):
    """Issue 34.9, the same kind: a command's default split (``units fit``'s training split, ``units report``'s) is the
    corpus's own when it names it its way; two candidates, or none, are one line naming them."""
    from speechrq.data.corpus import default_split
    from speechrq.units.run import fit_units

    corpus = _small_corpus(tiny_corpus, tmp_path / "libri", {"train-clean-100": ("train", 6), "dev-clean": ("dev", 3),
                                                                "test-clean": ("test", 3)})
    assert [default_split(corpus, r) for r in ("train", "dev", "test")] == ["train-clean-100", "dev-clean", "test-clean"]
    q = fit_units(FIXTURE, 1, corpus, tmp_path / "km", QuantizerSpec(k=4, niter=2), frames=100, max_duration=MAX_DURATION,
                  progress=False)
    assert q.source["split"] == "train-clean-100"
    ml = _small_corpus(tiny_corpus, tmp_path / "ml", {"train_10min": ("train", 2), "train_1h": ("train", 4), "valid": ("dev", 2)})
    assert default_split(ml, "dev") == "valid" and default_split(_small_corpus(tiny_corpus, tmp_path / "t", {"train": ("train", 2)}),
                                                                 "train") == "train"
    with pytest.raises(SpeechrqError, match=r"several train splits \(train_10min, train_1h\)"):
        fit_units(FIXTURE, 1, ml, tmp_path / "km2", QuantizerSpec(k=4, niter=2), frames=100, progress=False)
    with pytest.raises(SpeechrqError, match=r"no test split \(it has train_10min, train_1h, valid\)"):
        default_split(ml, "test")


def test_only_paths_under_the_folder_move_and_fingerprints_are_those_of_the_relative_manifests(tiny_corpus, tmp_path):
    """What a move rewrites, and what a fingerprint reads: a path under the folder (recorded or current) as relative to
    it, so a folder written by an older version (relative paths) and the same folder written now (absolute) are one
    input; a sibling folder whose name the folder's name begins is not inside it."""
    import json

    from lhotse import CutSet
    from lhotse.utils import fastcopy

    from speechrq.data.corpus import cut_files, load_cuts, moved_path, relocate
    from speechrq.identity import corpus_fingerprint, manifest_fingerprint

    assert moved_path("/a/c/x.wav", "/a/c", "/b/d") == "/b/d/x.wav"
    assert moved_path("/a/c2/x.wav", "/a/c", "/b/d") == "/a/c2/x.wav"  # a sibling sharing the prefix stays
    assert moved_path("/elsewhere/x.wav", "/a/c", "/b/d") == "/elsewhere/x.wav"
    assert moved_path("audio/x.wav", None, "/b/d") == "/b/d/audio/x.wav"  # an older version's relative path
    # the tiny corpus written relative, as speechrq did before: the same fingerprint, and relocate makes it absolute
    root = str(tiny_corpus.resolve())
    old = tmp_path / "older"
    old.mkdir()
    (old / "audio").symlink_to(tiny_corpus / "audio")
    for path in cut_files(tiny_corpus).values():
        text = path.read_text()
        assert f'"{root}/audio/' in text
        (old / path.name).write_text(text.replace(f'"{root}/', '"'))
        assert manifest_fingerprint(old / path.name) == manifest_fingerprint(path)
    assert corpus_fingerprint(old) == corpus_fingerprint(tiny_corpus)
    assert load_cuts(old, "dev")[0].recording.sources[0].source.startswith(f"{old.resolve()}/audio/")
    relocate(old)
    assert all(c.recording.sources[0].source.startswith(f"{old.resolve()}/audio/") for c in CutSet.from_file(old / "cuts_dev.jsonl"))
    assert corpus_fingerprint(old) == corpus_fingerprint(tiny_corpus)
    # a folder moved from x to c, holding a file of its own and one of the sibling x2: only its own moves
    c = tmp_path / "c"
    c.mkdir()
    (c / "paths.json").write_text(json.dumps({"root": str(tmp_path / "x")}))
    cut = next(iter(CutSet.from_file(tiny_corpus / "cuts_dev.jsonl")))
    src = cut.recording.sources[0]
    two = [fastcopy(cut, id=f"{cut.id}-{d}", recording=fastcopy(cut.recording, sources=[fastcopy(src, source=str(tmp_path / d / "a.wav"))]))
           for d in ("x", "x2")]
    CutSet.from_cuts(two).to_file(c / "cuts_dev.jsonl")
    relocate(c)
    assert [k.recording.sources[0].source for k in CutSet.from_file(c / "cuts_dev.jsonl")] == [str(c.resolve() / "a.wav"),
                                                                                               str(tmp_path / "x2" / "a.wav")]
    assert json.loads((c / "paths.json").read_text())["root"] == str(c.resolve())

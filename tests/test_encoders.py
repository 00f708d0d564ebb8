"""Frozen encoders: a checkpoint's hidden states, cached once per checkpoint; checkpoints of older code still load and hit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.checkpoint import load_model_state, save_checkpoint, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.data.corpus import load_cuts
from speechrq.encoders import FrozenEncoder, HiddenStateCache, cache_hidden_states, load_batch
from speechrq.features import FeatureStats
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.model import build_model


def make_checkpoint(corpus, root, seed):
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, root, train={"seed": seed}))
    model = build_model(cfg, FeatureStats.load(corpus / "feature_stats.json"))
    return save_checkpoint(step_dir(root, 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})


@pytest.fixture(scope="module")
def dev_cuts(pretrain_corpus):
    return load_cuts(pretrain_corpus, "dev").subset(first=6)


def test_a_second_pass_runs_no_encoder(pretrain_corpus, dev_cuts, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    enc = FrozenEncoder.from_checkpoint(ckpt)
    cache = HiddenStateCache(tmp_path / "cache", enc.fingerprint)
    assert cache_hidden_states(enc, dev_cuts, cache, progress=False) == 6 and enc.forward_calls > 0

    again = FrozenEncoder.from_checkpoint(ckpt)  # a new process, the same checkpoint
    assert again.fingerprint == enc.fingerprint
    assert cache_hidden_states(again, dev_cuts, HiddenStateCache(tmp_path / "cache", again.fingerprint), progress=False) == 0
    assert again.forward_calls == 0

    # the cached states are the encoder's (to float16), one per layer plus the front end
    ids = [c.id for c in dev_cuts][:2]
    states, lens = load_batch(cache, ids)
    from speechrq.data.batching import make_loader

    batch = next(iter(make_loader(dev_cuts.subset(first=1), 60.0, shuffle=False, num_buckets=1)))
    direct, dlens = enc(batch["audio"], batch["audio_lens"])
    assert states.shape[1] == enc.num_states == 5 and int(lens[0]) == int(dlens[0])
    ref = torch.stack(direct, 1)[0, :, : int(dlens[0])]
    assert torch.allclose(states[0, :, : int(lens[0])], ref, atol=2e-2, rtol=1e-2)

    other = FrozenEncoder.from_checkpoint(make_checkpoint(pretrain_corpus, tmp_path / "other", seed=1))
    assert other.fingerprint != enc.fingerprint


def test_cache_files_skip_the_fsync_and_a_torn_one_is_named_removed_and_computed_again(pretrain_corpus, dev_cuts, tmp_path,
                                                                                        monkeypatch):
    """Hidden states are a cache: written by rename without an fsync per utterance; a file a system crash left cut short
    is refused in one line naming it, removed, and the next pass computes the same bits again."""
    from speechrq.errors import SpeechrqError

    enc = FrozenEncoder.from_checkpoint(make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0))
    cache = HiddenStateCache(tmp_path / "cache", enc.fingerprint)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    assert cache_hidden_states(enc, dev_cuts.subset(first=3), cache, progress=False) == 3
    assert synced == []
    monkeypatch.undo()

    ids = [c.id for c in dev_cuts.subset(first=3)]
    whole = cache.get(ids[1])
    torn = cache.path(ids[1])
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # what a crash before the data reached the disk leaves
    with pytest.raises(SpeechrqError, match=rf"^{torn}: a cached file that does not load .* run the command again"):
        load_batch(cache, ids)
    assert not torn.exists()
    assert cache_hidden_states(enc, dev_cuts.subset(first=3), cache, progress=False) == 1  # that one alone, computed again
    assert np.array_equal(cache.get(ids[1]), whole)
    for leftover in (b"", b"PK\x03\x04" + bytes(60), b"\x80\x04garbage"):  # empty, a zip's header, a pickle's
        torn.write_bytes(leftover)
        with pytest.raises(SpeechrqError, match="a cached file that does not load"):
            cache.get(ids[1])
        assert not torn.exists()
    # a folder where a file belongs is nobody's crash: named, kept, and the same error until it is removed
    torn.mkdir()
    for _ in range(2):
        with pytest.raises(SpeechrqError, match=rf"^{torn}: a folder where a cached file belongs; remove it"):
            load_batch(cache, ids)
    assert torn.is_dir()


# ---------------------------------------------------------------- checkpoints of older code

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v0"  # made by make.sh at commit a9fc92f
sys.path.insert(0, str(FIXTURE))
from waveforms import fixture_waveforms  # noqa: E402  (the input of the fixture's reference outputs)


def test_a_checkpoint_of_older_code_loads_with_the_same_keys_fingerprint_and_outputs(tmp_path):
    import json

    from safetensors import safe_open

    from speechrq.checkpoint import read_meta
    from speechrq.features import LogMel
    from speechrq.models import trim_to_frames

    expected = json.loads((FIXTURE / "expected.json").read_text())
    ref = np.load(FIXTURE / "expected.npz")
    audio, lens = fixture_waveforms()

    # evaluation's view: same fingerprint, so caches written before are still hits, and the same states
    enc = FrozenEncoder.from_checkpoint(FIXTURE)
    assert enc.fingerprint == expected["fingerprint"]
    assert HiddenStateCache(tmp_path, enc.fingerprint).path("spk/utt 1").relative_to(tmp_path).as_posix() == expected["cache_file"]
    states, frame_lens = enc(audio, lens)
    assert frame_lens.tolist() == ref["frame_lens"].tolist()
    assert np.allclose(torch.stack(states, 1).numpy(), ref["states"], atol=1e-4, rtol=1e-4)

    # training's view: today's model has exactly the saved keys and shapes, loads strictly, and makes the same targets
    cfg = config_from_dict(PretrainConfig, read_meta(FIXTURE)["config"])
    model = build_model(cfg).eval()
    with safe_open(str(FIXTURE / "model.safetensors"), "pt") as f:
        saved = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == saved
    model.load_state_dict(load_model_state(FIXTURE))
    feats, flens = trim_to_frames(*LogMel()(audio, lens))
    x = model.normalizer(feats, flens)
    with torch.no_grad():
        mel, latent = model.targets.mel(x, flens), model.targets.latent(x, flens)
    # argmax near-ties may flip on another CPU's kernels; on the machine that made the fixture they are equal
    assert (mel.numpy() == ref["mel_targets"]).mean() > 0.99
    assert (latent.numpy() == ref["latent_targets"]).mean() > 0.99


def test_a_run_branches_from_a_checkpoint_of_older_code(pretrain_corpus, tmp_path):
    from speechrq.pretrain.trainer import train
    from speechrq.training.engine import read_metrics

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
        pretrain_corpus, tmp_path / "branch", optim={"max_steps": 6, "warmup_steps": 1},
        targets={"layers": [1, 2], "init_from": str(FIXTURE), "stats_utterances": 8}, train={"checkpoint_every": 6}))
    train(cfg, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "branch")] == [5, 6]  # steps continue from the fixture's 4
    assert {r["stage"] for r in read_metrics(tmp_path / "branch")} == {2}


@pytest.mark.parametrize("kind", ["wavlm", "data2vec-audio"])
def test_load_encoder_reads_a_hugging_face_folder(kind, tmp_path):
    from transformers import Data2VecAudioConfig, Data2VecAudioModel, WavLMConfig, WavLMModel

    from speechrq.encoders import load_encoder

    shape = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    model = WavLMModel(WavLMConfig(**shape)) if kind == "wavlm" else Data2VecAudioModel(Data2VecAudioConfig(**shape))
    model.save_pretrained(tmp_path / kind)
    enc = load_encoder(tmp_path / kind)
    assert enc.num_states == 4 and enc.fingerprint.startswith("hf-") and not any(p.requires_grad for p in enc.parameters())
    assert load_encoder(tmp_path / kind).fingerprint == enc.fingerprint  # the key of its cached states
    states, lens = enc(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert len(states) == 4 and all(s.shape == (2, 25, 32) for s in states) and lens.tolist() == [25, 12]


def test_a_hugging_face_folder_loads_its_safetensors_never_a_pickle_beside_them(tmp_path):
    from transformers import WavLMConfig, WavLMModel

    from speechrq.encoders import load_encoder

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "m")
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    torch.save({"x": RunsCode()}, tmp_path / "m" / "pytorch_model.bin")
    assert load_encoder(tmp_path / "m").num_states == 3
    assert not marker.exists()


def test_states_and_targets_of_an_utterance_do_not_depend_on_its_batch():
    """What the hidden-state and target caches rely on: computed alone or in any batch, the same."""
    from speechrq.checkpoint import read_meta
    from speechrq.features import LogMel
    from speechrq.models import trim_to_frames

    enc = FrozenEncoder.from_checkpoint(FIXTURE)
    model = build_model(config_from_dict(PretrainConfig, read_meta(FIXTURE)["config"])).eval()
    model.load_state_dict(load_model_state(FIXTURE))
    rng = np.random.default_rng(1)
    utts = [torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1) for n in (16000, 12345, 9999, 7777, 2561)]
    lens = torch.tensor([len(u) for u in utts])
    batch = torch.nn.utils.rnn.pad_sequence(utts, batch_first=True)

    def targets(audio, audio_lens):
        feats, flens = trim_to_frames(*LogMel()(audio, audio_lens))
        x = model.normalizer(feats, flens)
        return model.targets.mel(x, flens), model.targets.latent(x, flens)

    states, frame_lens = enc(batch, lens)
    mel, latent = targets(batch, lens)
    for i, u in enumerate(utts):
        alone, n = enc(u[None], lens[i : i + 1])
        n = int(n[0])
        assert n == int(frame_lens[i])
        # the features are bit-identical; the encoder's matmuls over another padded length round differently
        assert max(float((s[i, :n] - a[0, :n]).abs().max()) for s, a in zip(states, alone)) < 1e-5
        mel1, latent1 = targets(u[None], lens[i : i + 1])
        assert torch.equal(mel[i, :n], mel1[0, :n]) and torch.equal(latent[i, :n], latent1[0, :n])


def test_an_exported_checkpoint_is_the_same_frozen_encoder_without_heads_or_trainer_state(pretrain_corpus, dev_cuts, tmp_path, capsys):
    from safetensors import safe_open

    from speechrq.checkpoint import load_trainer_state
    from speechrq.cli import main
    from speechrq.data.batching import make_loader
    from speechrq.errors import SpeechrqError

    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "shipped" / "checkpoints" / "step_00000000"
    assert main(["export", str(ckpt), str(out)]) == 0
    assert "sha256" in capsys.readouterr().out
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys and not any(k.startswith("heads.") for k in keys) and not (out / "trainer.pt").exists()
    assert {k for k in load_model_state(ckpt) if not k.startswith("heads.")} == keys
    batch = next(iter(make_loader(dev_cuts.subset(first=2), 60.0, shuffle=False, num_buckets=1)))
    a, _ = FrozenEncoder.from_checkpoint(ckpt)(batch["audio"], batch["audio_lens"])
    b, _ = FrozenEncoder.from_checkpoint(out)(batch["audio"], batch["audio_lens"])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(SpeechrqError, match="cannot resume"):
        load_trainer_state(out)


def test_encoder_layer_k_is_state_k_of_the_whole_checkpoint_encoder_for_every_k():
    """``EncoderLayer(ckpt, k)`` (which stops after block k) returns what ``load_encoder(ckpt)`` calls layer k, for every k,
    on a padded batch of two utterances."""
    from speechrq.encoders import EncoderLayer, load_encoder

    whole = load_encoder(FIXTURE)
    g = torch.Generator().manual_seed(5)
    audio, audio_lens = 0.1 * torch.randn(2, 16000, generator=g), torch.tensor([16000, 9000])
    states, lens = whole(audio, audio_lens)
    assert len(states) == whole.num_states >= 3
    for k in range(-1, whole.num_states - 1):
        layer = EncoderLayer(FIXTURE, k)
        got, got_lens = layer(audio, audio_lens)
        assert torch.equal(got_lens, lens)
        for i, n in enumerate(lens.tolist()):
            torch.testing.assert_close(got[i, :n], states[k + 1][i, :n], atol=1e-5, rtol=1e-5, msg=f"layer {k}, utterance {i}")


HF_KINDS = {"wavlm": ("WavLMConfig", "WavLMModel"), "hubert": ("HubertConfig", "HubertModel"),
            "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model")}


@pytest.mark.parametrize("stable", [False, True], ids=["post-ln", "stable-ln"])
@pytest.mark.parametrize("kind", sorted(HF_KINDS))
def test_encoder_layer_k_of_a_hugging_face_folder_is_its_hidden_states_k_plus_1(kind, stable, tmp_path):
    """The layer mapping against the installed transformers run directly: ``EncoderLayer(folder, k)`` is
    ``hidden_states[k + 1]`` of the whole model (``-1`` the transformer's input), 20 ms frames averaged in pairs, for every
    k, with the base models' post-LayerNorm blocks and the large ones' pre-LayerNorm ("stable") blocks, where
    transformers 4 applied the final LayerNorm to the last recorded state (so early exit changed the deepest kept layer)."""
    import transformers

    from speechrq.encoders import EncoderLayer

    config_cls, model_cls = (getattr(transformers, name) for name in HF_KINDS[kind])
    extra = dict(do_stable_layer_norm=True, feat_extract_norm="layer") if stable else {}
    torch.manual_seed(0)
    model_cls(config_cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **extra)).save_pretrained(tmp_path / kind)
    reference = transformers.AutoModel.from_pretrained(tmp_path / kind, local_files_only=True).eval()
    audio = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = reference(audio, output_hidden_states=True).hidden_states
    assert len(hidden) == 4
    for k in range(-1, 3):
        h = hidden[k + 1]
        native, lens = EncoderLayer(tmp_path / kind, k)(audio, torch.tensor([16000, 12000]))  # the model's own 20 ms frames
        assert native.shape[1] == h.shape[1] == 49 and lens.tolist() == [49, 37]
        torch.testing.assert_close(native[:1], h[:1], atol=1e-5, rtol=1e-5, msg=f"{kind}, layer {k}, 20 ms")
        got, lens = EncoderLayer(tmp_path / kind, k, frame_ms=40)(audio, torch.tensor([16000, 16000]))  # pairs: the 40 ms grid
        pairs = h.shape[1] // 2
        want = h[:, : 2 * pairs].reshape(2, pairs, 2, -1).mean(2)
        assert got.shape == (2, int(lens.max()), 32) and pairs <= got.shape[1] <= pairs + 1
        torch.testing.assert_close(got[:, :pairs], want, atol=1e-5, rtol=1e-5, msg=f"{kind}, layer {k}")


# ---------------------------------------------------------------- the shortest input an encoder reads (issue 21.3)


def _batch(*lengths: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a tone, ``lengths`` samples each, zero-padded."""
    audio = torch.zeros(len(lengths), max(max(lengths), 1))
    for i, n in enumerate(lengths):
        audio[i, :n] = 0.1 * torch.sin(torch.arange(n) / 5.0)
    return audio, torch.tensor(lengths)


def test_a_checkpoint_encoder_reads_560_samples_and_refuses_shorter_rows_naming_them():
    """A 20 ms row (320 samples) ended in the front end's RuntimeError alone, and in an empty output beside a normal row."""
    from speechrq.encoders import EncoderLayer, FilterbankEncoder, load_encoder
    from speechrq.encoders.frozen import MIN_SAMPLES, min_samples
    from speechrq.errors import SpeechrqError
    from speechrq.features import num_frames

    assert MIN_SAMPLES == 560 and num_frames(560) == 4 and num_frames(559) == 3 and min_samples(FIXTURE) == 560
    enc = load_encoder(FIXTURE)
    modules = {"encoder": enc, "layer 1": EncoderLayer(FIXTURE, 1), "front end": EncoderLayer(FIXTURE, -1),
               "fbank": FilterbankEncoder(enc.normalizer)}
    for name, m in modules.items():
        assert m.min_samples == 560, name
        for lengths, frames in (((560,), [1]), ((16000, 560), [25, 1])):  # exactly the minimum: one frame, alone or batched
            out, lens = m(*_batch(*lengths))
            assert lens.tolist() == frames, name
        for lengths in ((559,), (0,), (1,), (16000, 320), (320, 16000, 0)):
            with pytest.raises(SpeechrqError) as e:
                m(*_batch(*lengths))
            msg = str(e.value)
            assert "\n" not in msg and "at least 560 samples (35 ms)" in msg, (name, msg)
            for i, n in enumerate(lengths):
                assert (f"row {i}: {n} samples" in msg) == (n < 560), (name, lengths, msg)


def test_a_hugging_face_encoder_reads_the_minimum_of_its_own_front_end():
    """The minimum follows the folder's conv_kernel / conv_stride: 720 samples for the standard front end (two 20 ms frames
    per 40 ms frame), 960 for wider kernels; one sample fewer would end in an empty or failing pooling."""
    import tempfile

    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechrq.encoders import EncoderLayer, load_encoder
    from speechrq.encoders.frozen import min_samples
    from speechrq.errors import SpeechrqError

    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra, minimum in (("standard", {}, 720), ("wide", {"conv_kernel": (10, 3, 3, 3, 3, 3, 3)}, 960)):
            torch.manual_seed(0)
            model = Wav2Vec2Model(Wav2Vec2Config(**shape, **extra)).eval()
            model.save_pretrained(f"{tmp}/{name}")
            with torch.no_grad():  # the number is tight: two frames of the model at the minimum, one below it
                assert model.feature_extractor(torch.zeros(1, minimum)).shape[-1] == 2
                assert model.feature_extractor(torch.zeros(1, minimum - 1)).shape[-1] == 1
            assert min_samples(f"{tmp}/{name}") == minimum
            for m in (load_encoder(f"{tmp}/{name}"), EncoderLayer(f"{tmp}/{name}", 0, frame_ms=40)):
                assert m.min_samples == minimum
                _, lens = m(*_batch(minimum))
                assert lens.tolist() == [1]
                with pytest.raises(SpeechrqError, match=rf"row 0: {minimum - 1} samples; each needs at least {minimum} samples"):
                    m(*_batch(minimum - 1))
                with pytest.raises(SpeechrqError, match=r"row 1: 600 samples \(1 of 2\)"):  # enough for a checkpoint, not here
                    m(*_batch(16000, 600))
            # at the model's own 20 ms one frame is enough: its receptive field, and never under a checkpoint's 560
            native = EncoderLayer(f"{tmp}/{name}", 0)
            own = {"standard": 560, "wide": 640}[name]
            assert native.min_samples == own
            _, lens = native(*_batch(own))
            assert lens.tolist() == [1]
            with pytest.raises(SpeechrqError, match=rf"row 0: {own - 1} samples; each needs at least {own} samples"):
                native(*_batch(own - 1))


def _short_corpus(root: Path, lengths: dict[str, int]) -> Path:
    """train, dev and test splits of tone files, ``{id: samples}`` in each."""
    import soundfile as sf
    from lhotse import CutSet, Recording, RecordingSet

    for split in ("train", "dev", "test"):
        recs = []
        for name, n in lengths.items():
            path = root / "audio" / f"{split}_{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000)
            recs.append(Recording.from_file(path, recording_id=f"{split}_{name}"))
        CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs)).to_file(root / f"cuts_{split}.jsonl.gz")
    return root


def test_evaluate_refuses_cuts_too_short_for_each_encoder_before_any_work(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechrq.encoders import load_encoder
    from speechrq.errors import SpeechrqError
    from speechrq.evaluate.run import evaluate

    corpus = _short_corpus(tmp_path / "corpus", {"long": 16000, "mid": 600})
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "hf")
    encoders = {"ours": load_encoder(FIXTURE), "hf": load_encoder(tmp_path / "hf")}
    with pytest.raises(SpeechrqError) as e:
        evaluate(encoders, corpus, ["sid"], tmp_path / "out", [1e-3], 1, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "too short for encoder hf" in msg and "at least 720 samples (45 ms" in msg
    assert all(f"({corpus / 'audio' / f'{s}_mid.wav'}): 600 samples" in msg for s in ("train", "dev", "test"))
    assert "long" not in msg
    assert not (tmp_path / "out" / "hidden_states").exists()  # nothing was encoded
    # 600 samples are enough for a checkpoint; with a 320-sample cut it is refused as well, naming it
    corpus = _short_corpus(tmp_path / "corpus2", {"long": 16000, "tiny": 320})
    with pytest.raises(SpeechrqError, match=r"3 of 6 utterance\(s\) too short for encoder ours.*train_tiny.wav\): 320 samples"):
        evaluate({"ours": encoders["ours"]}, corpus, ["sid"], tmp_path / "out2", [1e-3], 1, progress=False)


def test_a_hugging_face_target_encoder_gives_states_for_a_batch_of_pre_trainings_shortest_utterances(tmp_path):
    """Pre-training keeps utterances of 560 samples and more (one 40 ms frame); a Hugging Face target model makes one
    20 ms frame of them, which pooling in pairs used to turn into nothing (a padding error), whatever the batch."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechrq.encoders.hf import HuggingFaceEncoder

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "hf")
    states = HuggingFaceEncoder(tmp_path / "hf").hidden_states(*_batch(600, 560), frames=1)
    assert len(states) == 2 and all(s.shape == (2, 1, 32) and torch.isfinite(s).all() for s in states)


# ---------------------------------------------------------------- every model loads whole (issue 34.6)

HF_ALL = {"wavlm": "WavLM", "hubert": "Hubert", "wav2vec2": "Wav2Vec2", "data2vec-audio": "Data2VecAudio"}
HF_SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _hf_folder(path: Path, kind: str, task: str = "Model", seed: int = 0, **extra) -> Path:
    """A tiny random Hugging Face model of ``kind`` (``task``: ``Model``, ``ForCTC``, ``ForPreTraining``) saved at ``path``."""
    import transformers

    torch.manual_seed(seed)
    cfg = getattr(transformers, HF_ALL[kind] + "Config")(**HF_SHAPE, **extra)
    getattr(transformers, HF_ALL[kind] + task)(cfg).save_pretrained(path)
    return path


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _refusal(folder: Path) -> str:
    from speechrq.encoders import load_encoder
    from speechrq.errors import SpeechrqError

    with pytest.raises(SpeechrqError) as e:
        load_encoder(folder)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(folder)), msg
    return msg


@pytest.mark.parametrize("kind", sorted(HF_ALL))
def test_a_clean_hugging_face_folder_loads_whole_and_gives_the_same_states_at_every_load(kind, tmp_path):
    """A clean save of each architecture loads with nothing missing, unexpected or re-initialised: two loads have the same
    weights (every one of them the file's), the same fingerprint and bit-identical states."""
    import transformers
    from safetensors.torch import load_file

    from speechrq.encoders import load_encoder

    folder = _hf_folder(tmp_path / kind, kind)
    saved = load_file(str(folder / "model.safetensors"))
    audio, lens = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1)), torch.tensor([8000, 6000])
    a, b = load_encoder(folder), load_encoder(folder)
    assert a.fingerprint == b.fingerprint
    ref = transformers.AutoModel.from_pretrained(folder, local_files_only=True).state_dict()
    assert set(a.model.state_dict()) == set(ref) and all(torch.equal(a.model.state_dict()[k], ref[k]) for k in ref)
    assert all(torch.equal(a.model.state_dict()[k], saved[k]) for k in saved)
    (sa, la), (sb, lb) = a(audio, lens), b(audio, lens)
    assert torch.equal(la, lb) and all(torch.equal(x, y) for x, y in zip(sa, sb))


def test_a_wavlm_config_beside_hubert_weights_is_refused_in_one_line(tmp_path):
    """The issue's case: config.json says WavLM, the weights are HuBERT's. transformers fills WavLM's relative-position
    weights at random (its own report aside); speechrq refuses, naming how many and the first."""
    import shutil

    folder = _hf_folder(tmp_path / "m", "hubert")
    shutil.copy(_hf_folder(tmp_path / "w", "wavlm") / "config.json", folder / "config.json")
    msg = _refusal(folder)
    assert "7 missing (encoder.layers.0.attention.gru_rel_pos_const, encoder.layers.0.attention.gru_rel_pos_linear.bias, " in msg
    assert "WavLMModel" in msg and "unexpected" not in msg


def test_a_hubert_config_beside_wavlm_weights_is_refused_in_one_line(tmp_path):
    """The other way round nothing is missing, but WavLM's relative-position weights would be dropped: unexpected weights
    inside the encoder are refused too."""
    import shutil

    folder = _hf_folder(tmp_path / "m", "wavlm")
    shutil.copy(_hf_folder(tmp_path / "h", "hubert") / "config.json", folder / "config.json")
    msg = _refusal(folder)
    assert "7 unexpected (encoder.layers.0.attention.gru_rel_pos_const, " in msg and "missing" not in msg and "HubertModel" in msg


@pytest.mark.parametrize("kind", ["wavlm", "wav2vec2"])
def test_a_hugging_face_folder_with_a_weight_removed_added_or_reshaped_is_refused(kind, tmp_path):
    key = "encoder.layers.1.feed_forward.output_dense.weight"
    removed = _hf_folder(tmp_path / "removed", kind)
    _edit_weights(removed, lambda s: s.pop(key))
    assert f"1 missing ({key})" in _refusal(removed)

    two = _hf_folder(tmp_path / "two", kind)
    _edit_weights(two, lambda s: [s.pop(key), s.pop("feature_projection.projection.bias")])
    assert "2 missing (encoder.layers.1.feed_forward.output_dense.weight, feature_projection.projection.bias)" in _refusal(two)

    reshaped = _hf_folder(tmp_path / "reshaped", kind)
    _edit_weights(reshaped, lambda s: s.__setitem__(key, torch.zeros(32, 60)))
    msg = _refusal(reshaped)
    assert f"1 of another shape ({key}: (32, 60) in the file, (32, 64) in the model)" in msg

    extra = _hf_folder(tmp_path / "extra", kind)
    _edit_weights(extra, lambda s: s.__setitem__("encoder.layers.1.attention.extra.weight", torch.zeros(3)))
    assert "1 unexpected (encoder.layers.1.attention.extra.weight)" in _refusal(extra)

    # also where only the first layers are kept (a target layer below the broken one): the folder is refused whole
    from speechrq.encoders import EncoderLayer
    from speechrq.errors import SpeechrqError

    with pytest.raises(SpeechrqError, match=r"1 missing \(encoder\.layers\.1\.feed_forward"):
        EncoderLayer(removed, 0)


@pytest.mark.parametrize("kind, task", [("wav2vec2", "ForPreTraining"), ("wav2vec2", "ForCTC"), ("hubert", "ForCTC"),
                                        ("wavlm", "ForCTC")])
def test_a_task_models_folder_loads_its_encoder_whole_leaving_the_heads_beside_it(kind, task, tmp_path):
    """A folder saved from a CTC or pre-training model (``lm_head``, ``quantizer``, ``project_q``...): the encoder is all
    there, the heads beside it are never run, so it loads, with the task model's own encoder weights."""
    import transformers

    from speechrq.encoders import load_encoder

    folder = _hf_folder(tmp_path / "m", kind, task, **({"vocab_size": 12} if task == "ForCTC" else {}))
    enc = load_encoder(folder)
    full = getattr(transformers, HF_ALL[kind] + task).from_pretrained(folder, local_files_only=True)
    base = full.base_model.state_dict()
    assert all(torch.equal(v, base[k]) for k, v in enc.model.state_dict().items())


def test_a_folder_without_masked_spec_embed_loads_and_is_the_same_at_every_load(tmp_path):
    """``masked_spec_embed`` (SpecAugment's mask vector) is read only when masking in training: a folder without it loads,
    and it is set the same (zeros) at every load, so anything hashed from the encoder's state (a target cache's key) is
    stable."""
    from speechrq.encoders import load_encoder
    from speechrq.encoders.hf import HuggingFaceEncoder

    folder = _hf_folder(tmp_path / "m", "wavlm")
    _edit_weights(folder, lambda s: s.pop("masked_spec_embed"))
    a, b = load_encoder(folder), HuggingFaceEncoder(folder)
    assert torch.equal(a.model.masked_spec_embed, torch.zeros(32)) and torch.equal(b.model.masked_spec_embed, torch.zeros(32))
    audio, lens = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2)), torch.tensor([8000])
    assert all(torch.equal(x, y) for x, y in zip(a(audio, lens)[0], b(audio, lens)[0]))


def test_a_hugging_face_config_with_a_key_given_twice_is_refused(tmp_path):
    folder = _hf_folder(tmp_path / "m", "wavlm")
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text.replace('"hidden_size": 32,', '"hidden_size": 32, "hidden_size": 48,', 1))
    from speechrq.encoders.frozen import min_samples
    from speechrq.errors import SpeechrqError

    with pytest.raises(SpeechrqError, match=r"config\.json: key 'hidden_size' given twice") as e:
        min_samples(folder)  # read before any weights load
    assert "\n" not in str(e.value)
    assert "given twice" in _refusal(folder)


# a speechrq checkpoint: the encoder, its feature statistics and the Mel quantizer load whole or are refused in one line

def _broken_checkpoint(corpus, root, edit) -> Path:
    from safetensors.torch import load_file, save_file

    path = make_checkpoint(corpus, root, seed=0)
    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.pop("encoder.encoder.blocks.1.ffn1.1.weight"), r"1 missing \(encoder\.blocks\.1\.ffn1\.1\.weight\)"),
    (lambda s: s.__setitem__("encoder.encoder.blocks.9.ffn1.1.weight", torch.zeros(2)), r"1 unexpected \(encoder\.blocks\.9\.ffn1\.1\.weight\)"),
    (lambda s: s.__setitem__("encoder.encoder.blocks.1.ffn1.1.bias", torch.zeros(3)),
     r"1 of another shape \(encoder\.blocks\.1\.ffn1\.1\.bias: \(3,\) in the file, \(\d+,\) in the model\)"),
    (lambda s: s.pop("normalizer.std"), r"normalizer\.\*.*1 missing \(std\)"),
    (lambda s: s.__setitem__("normalizer.mean", torch.zeros(40)), r"1 of another shape \(mean: \(40,\) in the file, \(80,\) in the model\)"),
], ids=["missing", "unexpected", "shape", "normalizer-missing", "normalizer-shape"])
def test_a_checkpoint_encoder_with_a_weight_missing_extra_or_reshaped_is_refused_in_one_line(pretrain_corpus, tmp_path, edit, expected):
    from speechrq.encoders import EncoderLayer, load_encoder
    from speechrq.errors import SpeechrqError

    path = _broken_checkpoint(pretrain_corpus, tmp_path / "run", edit)
    for load in (load_encoder, lambda p: EncoderLayer(p, 1)):
        with pytest.raises(SpeechrqError, match=expected) as e:
            load(path)
        assert "\n" not in str(e.value) and str(e.value).startswith(str(path / "model.safetensors"))


def test_a_checkpoints_mel_quantizer_loads_whole_or_is_refused(pretrain_corpus, tmp_path):
    from speechrq.encoders.frozen import PretrainCheckpoint
    from speechrq.errors import SpeechrqError

    good = PretrainCheckpoint(make_checkpoint(pretrain_corpus, tmp_path / "good", seed=0))
    saved = load_model_state(good.path, prefix="targets.mel.quantizer.")
    q = good.mel_quantizer()
    assert all(torch.equal(q.state_dict()[k], v) for k, v in saved.items()) and set(q.state_dict()) == set(saved)
    for name, edit, expected in [("nocb", lambda s: s.pop("targets.mel.quantizer.codebooks"), r"1 missing \(codebooks\)"),
                                 ("noproj", lambda s: s.pop("targets.mel.quantizer.projection"), "no targets.mel.quantizer.projection")]:
        ckpt = PretrainCheckpoint(_broken_checkpoint(pretrain_corpus, tmp_path / name, edit))
        with pytest.raises(SpeechrqError, match=expected) as e:
            ckpt.mel_quantizer()
        assert "\n" not in str(e.value)

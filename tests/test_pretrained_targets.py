"""A Hugging Face encoder from a local folder as the target encoder (built from a config here)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.config import ConfigError, config_from_dict
from speechrq.errors import SpeechrqError
from speechrq.pretrain.config import PretrainConfig


@pytest.fixture(scope="module", params=["wavlm", "hubert"])
def hf_folder(request, tmp_path_factory):
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    kind = request.param
    shape = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    model = WavLMModel(WavLMConfig(**shape)) if kind == "wavlm" else HubertModel(HubertConfig(**shape))
    path = tmp_path_factory.mktemp(kind) / "model"
    model.save_pretrained(path)
    return path


def test_hidden_states_are_on_the_students_grid_and_stop_early(hf_folder):
    from speechrq.encoders.hf import HuggingFaceEncoder, is_pretrained_folder

    assert is_pretrained_folder(hf_folder)
    enc = HuggingFaceEncoder(hf_folder, depth=2).eval()
    assert len(enc.model.encoder.layers) == 2 and enc.pool == 2 and enc.dim == 32
    audio = torch.randn(2, 16000) * 0.1
    audio[1, 12000:] = 0
    with torch.no_grad():
        states = enc.hidden_states(audio, torch.tensor([16000, 12000]), frames=25)
        full = enc.model(audio, output_hidden_states=True).hidden_states
    assert len(states) == 3 and all(s.shape == (2, 25, 32) for s in states)
    # student frame t is the mean of the model's 20 ms frames 2t and 2t+1
    assert torch.allclose(states[1][:, 3], full[1][:, 6:8].mean(1), atol=1e-6)
    assert torch.equal(states[2][:, 24], states[2][:, 23])  # 49 frames -> 24 pairs, the last repeated


def test_latent_run_with_a_pretrained_target_encoder(hf_folder, pretrain_corpus, tmp_path):
    from speechrq.pretrain.trainer import train
    from speechrq.training.engine import read_metrics

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(
        pretrain_corpus, tmp_path / "run", optim={"max_steps": 3, "warmup_steps": 1},
        targets={"encoder": str(hf_folder), "layers": [0, 3], "stats_utterances": 4, "cache": "memory"}))
    last = train(cfg, progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["stage"] for r in records] == [1, 1, 1] and all(r["loss"] > 0 for r in records)
    from speechrq.checkpoint import load_model_state

    state = load_model_state(last)
    assert any(k.startswith("targets.latent.encoder.model.") for k in state)
    assert state["targets.latent.normalizers.1.std"].shape == (32,)


def test_pretrained_encoder_configs_are_checked(hf_folder, pretrain_corpus, tmp_path):
    base = tiny_pretrain_config(pretrain_corpus, tmp_path)
    with pytest.raises(ConfigError, match=r"outside -1..3 \(the layers of"):
        config_from_dict(PretrainConfig, {**base, "targets": {"encoder": str(hf_folder), "layers": [0, 4]}})
    with pytest.raises(ConfigError, match="cannot take the student's weights"):
        config_from_dict(PretrainConfig, {**base, "targets": {"encoder": str(hf_folder), "layers": [0, 1], "refresh_at": [2]}})
    with pytest.raises(ConfigError, match="neither a speechrq checkpoint nor a Hugging Face model folder"):
        config_from_dict(PretrainConfig, {**base, "targets": {"encoder": str(tmp_path / "nothing")}})
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SpeechrqError, match="supported target encoders are wavlm, hubert, wav2vec2"):
        config_from_dict(PretrainConfig, {**base, "targets": {"encoder": str(tmp_path / "odd")}})

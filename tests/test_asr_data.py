"""`speechrq.asr.data.ASRData`: the one object through which training, decoding, transcription and the comparison read
what a discrete-unit ASR model reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import speechrq
from speechrq.errors import SpeechrqError

ROOT = Path(speechrq.__file__).parent
# the pieces ASRData is made of: outside asr/data.py, only ASRData itself (and quantizer_fingerprint) is imported
PIECES = {"UnitSource", "unit_sequence", "pad_ids", "ASRBatches", "auto_vocab_size"}


def test_only_asr_data_reads_units_for_asr():
    """The trainer, decode, transcribe (asr/), the CLI and the comparison (studies/) build no units source, input ids or
    batches of their own: each goes through ASRData, so what a model reads is assembled in one place."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "asr" / "data.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("asr.data") or \
                    isinstance(node, ast.ImportFrom) and node.level and node.module == "data" and path.parent.name == "asr":
                used = {a.name for a in node.names} & PIECES
                if used:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {', '.join(sorted(used))}")
    assert not offenders, "read through ASRData instead: " + "; ".join(offenders)


def _units_folder(pretrain_corpus, tmp_path, name: str, seed: int = 0) -> Path:
    from speechrq.units.quantizers import QuantizerSpec
    from speechrq.units.run import encode_units, fit_units

    fit_units(pretrain_corpus / "feature_stats.json", -1, pretrain_corpus, tmp_path / name, QuantizerSpec("kmeans", 8, 1, seed=seed),
              frames=300, split="dev", progress=False)
    encode_units(tmp_path / name, pretrain_corpus, ["train", "dev"], tmp_path / f"{name}_enc", progress=False)
    return tmp_path / f"{name}_enc"


def test_asr_data_inputs_identity_and_the_model_it_serves(pretrain_corpus, tmp_path):
    from speechrq.asr.config import ASRDataConfig
    from speechrq.asr.data import ASRData

    units = _units_folder(pretrain_corpus, tmp_path, "km")
    data = ASRData.from_config(ASRDataConfig(units=str(units), input="dedup"))
    cuts = list(data.cuts("dev"))[:3]
    ids, lens = data.inputs(cuts)
    assert ids.shape[0] == 3 and ids.shape[2] == 1
    for i, c in enumerate(cuts):  # de-duplicated: no unit repeated in a row, all of them kept in order
        u = c.load_custom("units")[:, 0]
        kept = u[[0, *[t for t in range(1, len(u)) if u[t] != u[t - 1]]]]
        assert ids[i, : lens[i], 0].tolist() == kept.tolist()
    # the identity: what made the units, the split's manifest and the transcripts; another split, another identity
    a, _ = data.identity(cuts, "dev")
    b, _ = data.identity(list(data.cuts("train")), "train")
    assert set(a) == {"units", "train", "transcripts"} and a["units"] == b["units"] and a["train"] != b["train"]
    spec = data.model_inputs()
    assert spec["unit_vocab"] == 8 and spec["num_streams"] == 1 and spec["units_dir"] == str(units.resolve())
    # a trained model's data: its own folder, or units of the same quantizer; another quantizer's units are refused
    model = {"input": "dedup", **spec}
    assert ASRData.for_model(model).source.dir == units
    other = _units_folder(pretrain_corpus, tmp_path, "km_other", seed=1)
    with pytest.raises(SpeechrqError, match="not from the quantizer the model was trained on"):
        ASRData.for_model(model, units=other)
    # audio alone: states through the quantizer give the manifest's units
    alone = ASRData.for_model(model, need_units=False)
    import torch

    from speechrq.encoders import EncoderLayer

    layer = EncoderLayer(*data.source.encoder)
    audio = torch.as_tensor(cuts[0].load_audio()[0], dtype=torch.float32)[None]
    states, frames = layer(audio, torch.tensor([audio.shape[1]]))
    from_audio, n = alone.inputs_from_states(states, frames)
    assert from_audio[0, : n[0]].tolist() == ids[0, : lens[0]].tolist()
    with pytest.raises(SpeechrqError, match="no units folder"):
        alone.cuts("dev")
    with pytest.raises(SpeechrqError, match="input 'pcm'"):
        ASRData("pcm")

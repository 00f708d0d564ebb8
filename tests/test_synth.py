"""The embedded corpus: labels, speaker separability, determinism, resumption."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrq.data.corpus import load_cuts, summarize
from speechrq.data.synth import STYLES, SynthConfig, plan_corpus, synthesize_corpus
from speechrq.errors import SpeechrqError


def _all_cuts(corpus):
    return {split: list(load_cuts(corpus, split)) for split in ("train", "dev", "test")}


def test_corpus_carries_every_label(tiny_corpus):
    s = summarize(tiny_corpus)
    assert s["speakers"] >= 24
    assert set(s["splits"]) == {"train", "dev", "test"}
    assert all(v["speakers"] == 24 for v in s["splits"].values()), "every speaker in every split (SID)"
    assert set(s["emotions"]) == set(STYLES) == {"neutral", "happy", "sad", "angry"}
    assert s["kinds"]["command"] > 0 and s["kinds"]["sentence"] > 0
    assert s["phone_aligned"] == s["utterances"]
    cuts = _all_cuts(tiny_corpus)
    for split_cuts in cuts.values():
        for cut in split_cuts:
            sup = cut.supervisions[0]
            assert sup.text and sup.speaker
            assert cut.sampling_rate == 16000
            phones = sup.alignment["phone"]
            assert phones and all(p.duration > 0 for p in phones)
            assert phones[-1].start + phones[-1].duration <= cut.duration + 1e-4
            assert phones == sorted(phones, key=lambda p: p.start)
            assert " ".join(w.symbol for w in sup.alignment["word"]) == sup.text
            if sup.custom["kind"] == "command":
                a, o, l = (sup.custom[k] for k in ("action", "object", "location"))
                assert sup.custom["intent"] == f"{a}|{o}|{l}"
    train_text = {c.supervisions[0].text for c in cuts["train"] if c.supervisions[0].custom["kind"] == "sentence"}
    for split in ("dev", "test"):
        held = [c.supervisions[0].text for c in cuts[split] if c.supervisions[0].custom["kind"] == "sentence"]
        assert held and not (set(held) & train_text), "test sentences must be unseen in training"


def test_audio_matches_manifest(tiny_corpus):
    import soundfile as sf

    cut = next(iter(load_cuts(tiny_corpus, "dev")))
    audio = cut.load_audio()
    info = sf.info(cut.recording.sources[0].source)
    assert info.samplerate == 16000 and info.channels == 1
    assert audio.shape == (1, cut.recording.num_samples)
    assert np.abs(audio).max() > 0.05  # speech, not silence


def test_speakers_are_separable_by_nearest_centroid(tiny_corpus):
    """Issue 2: a nearest-centroid classifier on per-utterance MFCC means >= 85%."""
    from speechrq.data.batching import make_loader
    from speechrq.features import LogMel, lengths_to_padding_mask

    logmel = LogMel()
    n_mfcc = 20
    k = torch.arange(80, dtype=torch.float64)
    dct = torch.cos(torch.pi / 80 * (k[None, :] + 0.5) * torch.arange(n_mfcc, dtype=torch.float64)[:, None])

    def embed(split):
        xs, ys = [], []
        for batch in make_loader(load_cuts(tiny_corpus, split), max_duration=120, shuffle=False):
            feats, lens = logmel(batch["audio"], batch["audio_lens"])
            valid = (~lengths_to_padding_mask(lens, feats.shape[1])).unsqueeze(-1)
            mfcc = feats.double() @ dct.T
            mean = (mfcc * valid).sum(1) / lens[:, None]
            xs.append(mean[:, 1:])  # c0 is loudness, which the emotion styles change
            ys += [c.supervisions[0].speaker for c in batch["cuts"]]
        return torch.cat(xs), ys

    xtr, ytr = embed("train")
    xte, yte = embed("test")
    mu, sd = xtr.mean(0), xtr.std(0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    speakers = sorted(set(ytr))
    centroids = torch.stack([xtr[[y == s for y in ytr]].mean(0) for s in speakers])
    pred = torch.cdist(xte, centroids).argmin(1)
    acc = np.mean([speakers[p] == y for p, y in zip(pred.tolist(), yte)])
    assert len(speakers) >= 24
    print(f"nearest-centroid speaker accuracy: {acc:.3f} over {len(yte)} test utterances, {len(speakers)} speakers")
    assert acc >= 0.85, f"nearest-centroid speaker accuracy {acc:.3f}"


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file's sha256, the folder's own path taken out (manifests hold absolute paths under it, paths.json records it)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(_without_root(p.read_bytes(), root)).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _without_root(data: bytes, root: Path) -> bytes:
    return data.replace(str(root.resolve()).encode(), b"ROOT")


def test_same_seed_is_byte_identical_whatever_the_workers(tmp_path):
    config = SynthConfig(hours=0.02, speakers=6, seed=3, shard_size=10)
    synthesize_corpus(tmp_path / "a", config, workers=1, progress=False)
    synthesize_corpus(tmp_path / "b", config, workers=2, progress=False)
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert len([k for k in a if k.endswith(".wav")]) > 10
    assert a == b
    assert f'"{(tmp_path / "a").resolve()}/audio/'.encode() in (tmp_path / "a" / "cuts_train.jsonl").read_bytes()  # absolute paths
    synthesize_corpus(tmp_path / "c", SynthConfig(hours=0.02, speakers=6, seed=4, shard_size=10), workers=2, progress=False)
    assert _tree_digest(tmp_path / "c")["cuts_train.jsonl"] != a["cuts_train.jsonl"]


def test_interrupted_synthesis_resumes_to_the_same_corpus(tmp_path):
    config = SynthConfig(hours=0.02, speakers=6, seed=3, shard_size=10)
    out = tmp_path / "a"
    synthesize_corpus(out, config, workers=2, progress=False)
    before = _tree_digest(out)
    # as if killed: the manifests and two shards (rows and audio) never got written
    for name in ("summary.json", "cuts_train.jsonl", "cuts_dev.jsonl", "cuts_test.jsonl", "shards/0000.jsonl", "shards/0002.jsonl"):
        (out / name).unlink()
    shutil.rmtree(out / "audio" / "0000")
    kept = (out / "shards" / "0001.jsonl").stat().st_mtime_ns
    synthesize_corpus(out, config, workers=2, progress=False)
    assert (out / "shards" / "0001.jsonl").stat().st_mtime_ns == kept, "finished shards are reused"
    assert _tree_digest(out) == before


def test_a_directory_of_another_config_is_refused(tmp_path):
    synthesize_corpus(tmp_path, SynthConfig(hours=0.005, speakers=3, seed=1), workers=1, progress=False)
    with pytest.raises(SpeechrqError, match="seed"):
        synthesize_corpus(tmp_path, SynthConfig(hours=0.005, speakers=3, seed=2), workers=1, progress=False)


def test_plan_is_deterministic_and_balanced():
    a, b = plan_corpus(SynthConfig(hours=0.3, speakers=30, seed=5)), plan_corpus(SynthConfig(hours=0.3, speakers=30, seed=5))
    assert a.utterances == b.utterances and a.speakers == b.speakers
    assert len({s.variant for s in a.speakers}) == 30, "a variant of its own per speaker"
    assert len({s.accent for s in a.speakers}) >= 6


def test_command_share_sets_the_kinds():
    base = plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5))
    kinds = {u.kind for u in base.utterances}
    assert kinds == {"command", "sentence"}
    commands = plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5, command_share=1.0)).utterances
    assert {u.kind for u in commands} == {"command"} and all(u.intent for u in commands)
    assert {u.kind for u in plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5, command_share=0.0)).utterances} == {"sentence"}


def test_a_corpus_made_before_a_config_field_existed_is_still_reused(tmp_path):
    cfg = SynthConfig(hours=0.005, speakers=3, seed=1)
    synthesize_corpus(tmp_path, cfg, workers=1, progress=False)
    plan = json.loads((tmp_path / "plan.json").read_text())
    del plan["config"]["command_share"]  # as written before --command-share existed
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert synthesize_corpus(tmp_path, cfg, workers=1, progress=False)["speakers"] == 3
    with pytest.raises(SpeechrqError, match="command_share"):
        synthesize_corpus(tmp_path, SynthConfig(hours=0.005, speakers=3, seed=1, command_share=1.0), workers=1, progress=False)


def test_bad_config_is_a_one_line_error():
    with pytest.raises(SpeechrqError, match="--speakers"):
        SynthConfig(speakers=1).validate()
    with pytest.raises(SpeechrqError, match="--hours"):
        SynthConfig(hours=0).validate()
    with pytest.raises(SpeechrqError, match="--command-share"):
        SynthConfig(command_share=1.5).validate()
    for bad, flag in ((dict(rate_jitter=0.6), "--rate-jitter"), (dict(pitch_jitter=-1), "--pitch-jitter"), (dict(snr_db=99), "--snr")):
        with pytest.raises(SpeechrqError, match=flag):
            SynthConfig(**bad).validate()


def test_prosody_jitter_varies_each_utterance_and_leaves_the_default_plan_unchanged():
    from dataclasses import replace

    from speechrq.data.synth import _prosody

    base = plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5))
    assert {(u.rate_factor, u.pitch_offset) for u in base.utterances} == {(1.0, 0)}
    varied = plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5, rate_jitter=0.15, pitch_jitter=10))
    # the same texts, speakers, styles and labels: only the two new draws differ
    assert [replace(u, rate_factor=1.0, pitch_offset=0) for u in varied.utterances] == base.utterances
    rates = [u.rate_factor for u in varied.utterances]
    assert min(rates) >= 0.85 and max(rates) <= 1.15 and len(set(rates)) > len(rates) // 2
    assert {u.pitch_offset for u in varied.utterances} >= {-9, 0, 9}
    spk = {s.id: s for s in varied.speakers}
    u0, v0 = base.utterances[0], varied.utterances[0]
    assert _prosody(spk[v0.speaker], v0).rate == round(_prosody(spk[u0.speaker], u0).rate * v0.rate_factor)
    assert plan_corpus(SynthConfig(hours=0.3, speakers=8, seed=5, rate_jitter=0.15, pitch_jitter=10)).utterances == varied.utterances


def test_snr_adds_noise_at_the_stated_level(tmp_path):
    clean_cfg = SynthConfig(hours=0.004, speakers=2, seed=2)
    synthesize_corpus(tmp_path / "clean", clean_cfg, workers=1, progress=False)
    synthesize_corpus(tmp_path / "noisy", SynthConfig(hours=0.004, speakers=2, seed=2, snr_db=10.0), workers=1, progress=False)
    measured = []
    for clean, noisy in zip(load_cuts(tmp_path / "clean", "train"), load_cuts(tmp_path / "noisy", "train")):
        x, y = clean.load_audio()[0].astype(np.float64), noisy.load_audio()[0].astype(np.float64)
        speech = x[np.abs(x) > 0.01 * np.abs(x).max()]
        measured.append(10 * np.log10(np.mean(speech**2) / np.mean((y - x) ** 2)))
    assert len(measured) >= 2 and all(abs(m - 10.0) < 0.5 for m in measured), measured
    assert (_without_root((tmp_path / "noisy" / "cuts_train.jsonl").read_bytes(), tmp_path / "noisy")
            == _without_root((tmp_path / "clean" / "cuts_train.jsonl").read_bytes(), tmp_path / "clean"))


def test_espeak_refuses_a_voice_it_would_silently_replace():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:  # libespeak-ng is per process: keep it out of the test process
        assert pool.apply(_voice_identifier, ("en-us+m3",)) == "gmw/en-US+m3"
        msg = pool.apply(_voice_identifier, ("en-us+M3",))
    assert "not available" in msg and "en-us+M3" in msg


def _voice_identifier(name):
    from speechrq.data.espeak import Espeak

    try:
        return Espeak().set_voice(name)
    except SpeechrqError as e:
        return str(e)


_SPEAK_EVERY_VARIANT = """
import hashlib, json
import numpy as np
from speechrq.data.espeak import Espeak, Prosody
from speechrq.data.synth import VARIANTS
engine = Espeak()
out = {}
for variant in VARIANTS:
    voice = f"en+{variant}"
    s = engine.synthesize("the quick brown fox jumps over the lazy dog", voice, Prosody(170, 50, 50, 100))
    out[voice] = hashlib.sha256(s.samples.tobytes()).hexdigest()
print(json.dumps(out))
"""


def test_every_voice_variant_speaks_identically_in_every_process():
    # processes started apart in time: the left-out variants (f2, f3, f5, victor) gave 5 or 6 different
    # outputs in 8 such processes; every variant kept gives one
    import json
    import subprocess
    import sys
    import time

    runs = []
    for _ in range(6):
        runs.append(json.loads(subprocess.run([sys.executable, "-c", _SPEAK_EVERY_VARIANT], capture_output=True, text=True, check=True,
                                              timeout=300).stdout))
        time.sleep(0.3)
    differ = sorted(v for v in runs[0] if any(r[v] != runs[0][v] for r in runs[1:]))
    assert not differ, f"not reproducible across processes: {differ}"
    assert len(runs[0]) == len(__import__("speechrq.data.synth", fromlist=["VARIANTS"]).VARIANTS)


def test_a_multilingual_corpus_is_byte_identical_and_labels_language_phones_and_speakers(tmp_path):
    from speechrq.text import normalize_text

    config = SynthConfig(hours=0.03, speakers=6, seed=2, shard_size=12, command_share=0.0, languages="fr,ru,cmn")
    synthesize_corpus(tmp_path / "a", config, workers=1, progress=False)
    synthesize_corpus(tmp_path / "b", config, workers=2, progress=False)
    a = _tree_digest(tmp_path / "a")
    assert a == _tree_digest(tmp_path / "b")
    assert "languages" in json.loads((tmp_path / "a" / "plan.json").read_text())["config"]
    cuts = [c for split in _all_cuts(tmp_path / "a").values() for c in split]
    sups = [c.supervisions[0] for c in cuts]
    assert {s.language for s in sups} == {"fr", "ru", "cmn"}
    by_speaker = {}
    for s in sups:
        by_speaker.setdefault(s.speaker, set()).add(s.language)
    assert len(by_speaker) == 6 and all(len(v) == 1 for v in by_speaker.values()), "each speaker speaks one language"
    for s in sups:
        text = s.text
        assert normalize_text(text) == text and text  # written as it is scored
        if s.language == "cmn":
            assert " " not in text and all("\u4e00" <= ch <= "\u9fff" for ch in text)
        elif s.language == "ru":
            assert any("\u0400" <= ch <= "\u04ff" for ch in text)
        phones = [it.symbol for it in s.alignment["phone"]]
        assert len([p for p in phones if p != "sil"]) >= 3 and not any(p.startswith("(") for p in phones)
    assert all(c.supervisions[0].alignment["phone"][-1].end <= c.duration + 1e-6 for c in cuts)
    # Mandarin is spoken in Mandarin phones (espeak's pinyin-like mnemonics), not in another language's
    cmn = {it.symbol for s in sups if s.language == "cmn" for it in s.alignment["phone"]}
    ru = {it.symbol for s in sups if s.language == "ru" for it in s.alignment["phone"]}
    assert cmn != ru and len(cmn - ru) >= 5
    other = SynthConfig(hours=0.03, speakers=6, seed=3, shard_size=12, command_share=0.0, languages="fr,ru,cmn")
    assert plan_corpus(other).utterances != plan_corpus(config).utterances


def test_multilingual_config_errors_are_one_line():
    with pytest.raises(SpeechrqError, match="'ja'.*not spoken here"):
        SynthConfig(languages="en,ja", command_share=0.0).validate()
    with pytest.raises(SpeechrqError, match="twice"):
        SynthConfig(languages="en,fr,en", command_share=0.0).validate()
    with pytest.raises(SpeechrqError, match="at least 2"):
        SynthConfig(languages="en,fr,de", speakers=4, command_share=0.0).validate()
    with pytest.raises(SpeechrqError, match="--command-share"):
        SynthConfig(languages="en,fr").validate()  # commands are English
    for bad in (",", "en,,fr", "en,"):
        with pytest.raises(SpeechrqError, match="empty item"):
            SynthConfig(languages=bad, command_share=0.0).validate()


def test_the_cli_spells_a_language_list_one_way(tmp_path, capsys):
    from speechrq.cli import main

    assert main(["synth", str(tmp_path / "a"), "--languages", "EN, Fr", "--hours", "0.002", "--speakers", "4", "--quiet"]) in (0, None)
    assert json.loads((tmp_path / "a" / "plan.json").read_text())["config"]["languages"] == "en,fr"
    assert main(["synth", str(tmp_path / "a"), "--languages", "en,fr", "--hours", "0.002", "--speakers", "4", "--quiet"]) in (0, None)
    assert "already complete" in capsys.readouterr().out  # the same corpus, reused
    assert main(["synth", str(tmp_path / "b"), "--languages", "", "--quiet"]) == 2
    assert "--languages: give at least one language id" in capsys.readouterr().err

"""Duration-bucketed dynamic batches: bounded, complete, padded with true lengths."""

from __future__ import annotations


from speechrq.data.batching import make_loader, make_sampler
from speechrq.data.corpus import load_cuts


def test_batches_are_bounded_complete_and_padded(tiny_corpus):
    cuts = load_cuts(tiny_corpus, "train")
    max_duration = 30.0
    seen = []
    for batch in make_loader(cuts, max_duration=max_duration, shuffle=True, seed=1, num_buckets=4):
        audio, lens = batch["audio"], batch["audio_lens"]
        assert audio.shape[0] == lens.shape[0] == len(batch["cuts"])
        assert sum(c.duration for c in batch["cuts"]) <= max_duration + 1e-6
        assert audio.shape[1] == int(lens.max())
        for i, cut in enumerate(batch["cuts"]):
            assert int(lens[i]) == cut.num_samples
            assert (audio[i, int(lens[i]) :] == 0).all()
        seen += [c.id for c in batch["cuts"]]
    assert sorted(seen) == sorted(c.id for c in cuts)


def test_bucketing_groups_similar_durations(tiny_corpus):
    cuts = load_cuts(tiny_corpus, "train")
    sampler = make_sampler(cuts, max_duration=20.0, shuffle=True, seed=0, num_buckets=6)
    spreads = [max(c.duration for c in b) - min(c.duration for c in b) for b in sampler if len(b) > 1]
    overall = max(c.duration for c in cuts) - min(c.duration for c in cuts)
    assert spreads and sum(spreads) / len(spreads) < 0.5 * overall


def test_ranks_split_the_data(tiny_corpus):
    cuts = load_cuts(tiny_corpus, "train")
    ids = [[c.id for b in make_sampler(cuts, 20.0, seed=0, world_size=2, rank=r) for c in b] for r in (0, 1)]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])


# ---------------------------------------------------------------- short audio, and batches with no loadable file


def _corpus_of(tmp_path, lengths: dict[str, int], split: str = "train"):
    """A corpus folder whose manifest holds one cut per ``{id: samples}`` (zeros plus a tone), paths relative to it."""
    import numpy as np
    import soundfile as sf
    from lhotse import CutSet, Recording, RecordingSet

    recs = []
    for name, n in lengths.items():
        path = tmp_path / "audio" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000)
        rec = Recording.from_file(path, recording_id=name)
        rec.sources[0].source = f"audio/{name}.wav"
        recs.append(rec)
    CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs)).to_file(tmp_path / f"cuts_{split}.jsonl.gz")
    return load_cuts(tmp_path, split)


def test_cuts_too_short_for_the_encoder_are_refused_before_any_audio_is_read_naming_each(tmp_path):
    import pytest

    from speechrq.data.batching import refuse_short_cuts
    from speechrq.encoders.frozen import MIN_SAMPLES
    from speechrq.errors import SpeechrqError

    cuts = _corpus_of(tmp_path, {"zero": 0, "one": 1, "short": 320, "under": MIN_SAMPLES - 1, "exact": MIN_SAMPLES, "long": 16000})
    with pytest.raises(SpeechrqError) as e:
        refuse_short_cuts(cuts, MIN_SAMPLES, "encoder layer 1")
    msg = str(e.value)
    assert "\n" not in msg and "4 of 6 utterance(s) too short for encoder layer 1" in msg and "560 samples (35 ms" in msg
    for name, n in (("zero", 0), ("one", 1), ("short", 320), ("under", 559)):
        assert f"audio/{name}.wav): {n} samples" in msg
    assert "exact" not in msg and "long" not in msg
    keep = cuts.filter(lambda c: c.recording.id in ("exact", "long"))
    assert refuse_short_cuts(keep, MIN_SAMPLES) == 2  # exactly at the minimum passes


def test_the_loader_skips_audio_shorter_than_asked_naming_it_and_yields_no_empty_batch(tmp_path, caplog):
    from speechrq.data.batching import sequential_batches

    cuts = _corpus_of(tmp_path, {"a_short": 320, "b_short": 100, "c_long": 16000})
    batches = list(sequential_batches(cuts, max_duration=0.05, min_samples=560))  # one cut per group
    assert [c.recording.id for b in batches for c in b["cuts"]] == ["c_long"] and batches[0]["consumed"] == 3
    assert all(b["audio"].shape[0] == len(b["cuts"]) > 0 for b in batches)
    assert any("a_short" in r.getMessage() and "320 samples, fewer than the 560" in r.getMessage() for r in caplog.records)


def test_a_job_that_can_load_no_audio_at_all_says_why_in_one_line(tmp_path, capsys):
    """Issue 21.4: ``features stats`` on a corpus none of whose files could be read ended in ``max(): Expected reduction
    dim`` from an empty batch."""
    import subprocess
    import sys

    import pytest

    from speechrq.errors import SpeechrqError
    from speechrq.features import compute_stats

    cuts = _corpus_of(tmp_path, {"a": 8000, "b": 8000, "c": 8000})
    for name in ("a", "b"):
        (tmp_path / "audio" / f"{name}.wav").unlink()
    # one file left: the batches hold it alone, and name the other two
    loader = make_loader(cuts, 60.0, shuffle=False)
    assert [c.recording.id for b in loader for c in b["cuts"]] == ["c"]
    assert sorted(s.split(" ")[0] for s in loader.skipped) == sorted(c.id for c in cuts if c.recording.id != "c")
    assert all("does not exist" in s for s in loader.skipped)
    assert compute_stats(cuts, progress=False).utterances == 1
    (tmp_path / "audio" / "c.wav").unlink()
    with pytest.raises(SpeechrqError) as e:
        compute_stats(cuts, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "no audio could be loaded" in msg and "3 file(s)" in msg
    assert f"audio file {tmp_path / 'audio' / 'a.wav'} does not exist" in msg
    with pytest.raises(SpeechrqError, match="does not exist"):
        list(make_loader(cuts, 60.0, shuffle=False))
    assert list(make_loader(cuts, 60.0, shuffle=False, require_audio=False)) == []
    r = subprocess.run([sys.executable, "-m", "speechrq", "features", "stats", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr, r.stderr
    assert r.stderr.count("speechrq: error:") == 1


def test_a_loader_never_shards_from_torchruns_environment(tmp_path, monkeypatch):
    """lhotse's samplers read WORLD_SIZE and RANK when not told: under torchrun a one-process loader (target analysis,
    fine-tuning's statistics) would silently read half the corpus."""
    cuts = _corpus_of(tmp_path, {f"u{i}": 8000 for i in range(6)})
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    got = [c.id for b in make_loader(cuts, 60.0, shuffle=False) for c in b["cuts"]]
    assert sorted(got) == sorted(c.id for c in cuts)

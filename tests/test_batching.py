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

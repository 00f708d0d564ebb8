"""Synthesis speed of ``speechrq synth``, in real-time factor per core.

Target (issue 2): >= 300x real time per core, for the synthesis (espeak, resampling,
alignments, audio and shard files). The end-to-end figure adds the one-off cost of
assembling lhotse manifests (mostly importing lhotse and torch, ~2 s). The machine is noisy, so the same
process first times a baseline, the bare libespeak-ng calls for the same
utterances in a forked process, and prints the pipeline's speed as a ratio of it.

    python benchmarks/bench_synth.py [--hours 0.15] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time

from speechrq.data.synth import SynthConfig, _prosody, plan_corpus, synthesize_corpus


def _bare_espeak(args):
    utterances, speakers = args
    from speechrq.data.espeak import Espeak

    engine = Espeak()
    n = 0
    for u in utterances:
        n += len(engine.synthesize(u.text, speakers[u.speaker].voice, _prosody(speakers[u.speaker], u)).samples)
    return n / engine.sample_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    config = SynthConfig(hours=args.hours, speakers=32, seed=123)
    plan = plan_corpus(config)
    speakers = {s.id: s for s in plan.speakers}

    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        bare_audio = pool.apply(_bare_espeak, ((plan.utterances, speakers),))
    bare_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        timings: dict = {}
        summary = synthesize_corpus(d, config, workers=args.workers, progress=False, timings=timings)
        wall = time.perf_counter() - t0
    audio_s = summary["hours"] * 3600
    synth_s = timings["synthesis_seconds"]
    result = {
        "audio_seconds": round(audio_s, 1),
        "workers": args.workers,
        "synthesis_seconds": round(synth_s, 2),
        "rtf_per_core": round(audio_s / synth_s / args.workers, 1),
        "end_to_end_seconds": round(wall, 2),
        "end_to_end_rtf_per_core": round(audio_s / wall / args.workers, 1),
        "baseline_bare_espeak_rtf": round(bare_audio / bare_s, 1),
        "ratio_to_bare_espeak": round((audio_s / synth_s / args.workers) / (bare_audio / bare_s), 3),
        "target_rtf_per_core": 300,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()

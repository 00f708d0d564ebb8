"""``speechrq asr compare``: the RPQ paper's Table II on one corpus, in one command.

For one encoder layer: the continuous features, k-means units, PQ units for each M of a
list, and RPQ units for each M (with ``alpha``) are each fit on one seeded sample,
encoded, and used to train the same ASR model for the same steps; every model is then
decoded on the test split. The table gives CER and WER, the training time per epoch
(Figure 6: seconds of the trainer's own steps times the steps an epoch takes) and the
input's bits per second (``M log2 k`` per 40 ms frame; 32 bits per dimension for the
continuous features). Every stage is reused when finished (units, runs, decodes), so an
interrupted comparison resumes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text, read_json


def systems(k: int, pq_ms: list[int], rpq_ms: list[int], alpha: float, continuous: bool = True) -> list[dict]:
    """The rows of the table: name, input kind, and the quantizer spec (None for continuous)."""
    rows = [{"name": "continuous", "input": "continuous", "quantizer": {"kind": "kmeans", "k": k, "num_subspaces": 1}}] if continuous else []
    rows += [{"name": f"k-means (k={k})", "input": "units", "quantizer": {"kind": "kmeans", "k": k, "num_subspaces": 1}}]
    rows += [{"name": f"PQ (M={m})", "input": "units", "quantizer": {"kind": "pq", "k": k, "num_subspaces": m}} for m in pq_ms]
    rows += [{"name": f"RPQ (M={m}, α={alpha:g})", "input": "units",
              "quantizer": {"kind": "rpq", "k": k, "num_subspaces": m, "alpha": alpha}} for m in rpq_ms]
    return rows


def _slug(q: dict) -> str:
    return f"{q['kind']}_k{q['k']}_m{q['num_subspaces']}" + (f"_a{q['alpha']:g}" if q["kind"] == "rpq" else "")


def compare(encoder: str | Path, layer: int, corpus: str | Path, out: str | Path, config: str | Path, k: int, pq_ms: list[int],
            rpq_ms: list[int], alpha: float = 0.125, frames: int = 60000, seed: int = 0, overrides: list[str] = (),
            test_split: str = "test", beam: int = 10, ctc_weight: float = 0.3, mode: str = "joint", progress: bool = True,
            continuous: bool = True, jobs: int = 1) -> dict:
    """Run every system (see the module docstring) into ``out``; returns and writes ``compare.json`` / ``compare.md``.

    ``jobs`` systems run side by side, one process each with its share of the threads
    (:mod:`speechrq.parallel`; for a CPU: on a GPU keep 1); their time per epoch is then measured
    while they share the machine, which ``compare.json`` records (``jobs``)."""
    from ..asr.config import ASRConfig
    from ..config import config_to_dict, load_config
    from ..encoders import EncoderLayer
    from ..identity import claim, corpus_fingerprint
    from ..parallel import run_in_processes

    out = Path(out)
    if jobs < 1:
        raise SpeechrqError(f"--jobs: must be >= 1, got {jobs}")
    rows = systems(k, pq_ms, rpq_ms, alpha, continuous)
    # OUT holds one comparison: the same encoder weights and layer, corpus content, ASR config and sample; rows (systems)
    # may be added, and rows are re-decoded when only the decoding settings changed
    base = config_to_dict(load_config(ASRConfig, config, [*overrides, "data.units=unused", "out_dir=unused"]))
    identity = {"code": "asr-compare/1", "encoder": EncoderLayer(encoder, layer).fingerprint, "layer": layer,
                "corpus": corpus_fingerprint(corpus), "config": base, "frames": frames, "seed": seed, "test_split": test_split, "k": k}
    claim(out, identity, "an ASR comparison", hint="use another --out or delete it")
    from ..asr.search import SEARCH_VERSION

    decoding = {"mode": mode, "beam": beam, "ctc_weight": ctc_weight, "search": SEARCH_VERSION}
    settings = {"test_split": test_split, "mode": mode, "beam": beam, "ctc_weight": ctc_weight}
    results = read_json(out / "compare.json")["rows"] if (out / "compare.json").exists() else {}
    todo = [row for row in rows if not (row["name"] in results and "cer" in results[row["name"]]
                                        and results[row["name"]].get("decoding") == decoding
                                        and results[row["name"]].get("quantizer") == row["quantizer"])]
    workers = max(1, min(jobs, len(todo)))
    tasks = [{"encoder": str(encoder), "layer": layer, "corpus": str(corpus), "out": str(out), "config": str(config),
              "overrides": list(overrides), "row": row, "frames": frames, "seed": seed, "test_split": test_split,
              "decoding": decoding, "jobs": workers, "progress": progress and workers == 1} for row in todo]

    def finished(task: dict, result: dict) -> None:  # each row saved as it finishes: an interrupted comparison resumes
        results[task["row"]["name"]] = result
        atomic_write_json(out / "compare.json", settings | {"rows": results})
        if progress and workers > 1:
            print(f"compare: {task['row']['name']}: CER {result['cer']:.2f}", flush=True)

    if progress and workers > 1:
        print(f"compare: {', '.join(t['row']['name'] for t in tasks)} in {workers} processes", flush=True)
    run_in_processes(_run_system, tasks, workers, progress, desc="systems", on_done=finished)
    report = settings | {"rows": {r["name"]: results[r["name"]] for r in rows}}
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", format_compare(report))
    return report


def _run_system(task: dict) -> dict:
    """One row of the table: units fit and encoded (reused when done), the ASR model trained (resumed or reused
    when its config and inputs are the same), test decoded; returns the row's numbers."""
    from ..asr.config import ASRConfig
    from ..asr.data import UnitSource
    from ..asr.decode import Recognizer, decode_split
    from ..asr.trainer import train_asr
    from ..checkpoint import latest_checkpoint
    from ..config import load_config
    from ..training.engine import read_metrics
    from ..units import QuantizerSpec
    from ..units.run import encode_units, fit_units

    row, out, progress, dec_settings = task["row"], Path(task["out"]), task["progress"], task["decoding"]
    q, test_split = row["quantizer"], task["test_split"]
    units_dir = out / "units" / _slug(q)
    spec = QuantizerSpec(kind=q["kind"], k=q["k"], num_subspaces=q["num_subspaces"], alpha=q.get("alpha", 0.125), seed=task["seed"])
    if progress:
        print(f"compare: {row['name']}", flush=True)
    quant = fit_units(task["encoder"], task["layer"], task["corpus"], units_dir, spec, frames=task["frames"], progress=progress)
    encode_units(units_dir, task["corpus"], ["train", "dev", test_split], units_dir / "corpus", progress=progress)  # reused when done
    run = out / "runs" / (row["input"] if row["input"] == "continuous" else _slug(q))
    cfg = load_config(ASRConfig, task["config"], [*task["overrides"], f"data.units={units_dir / 'corpus'}", f"data.input={row['input']}",
                                                  f"out_dir={run}"])
    train_asr(cfg, resume=latest_checkpoint(run / "checkpoints") is not None, progress=progress)
    metrics = read_metrics(run)
    s_per_step = sum(r["s_per_step"] for r in metrics) / max(len(metrics), 1)
    source = UnitSource(units_dir / "corpus")
    train_hours = sum(c.duration for c in source.cuts(cfg.data.train_split)) / 3600
    steps_per_epoch = train_hours * 3600 / cfg.data.max_duration  # batches of max_duration seconds of audio
    rec = Recognizer(run)
    dec = decode_split(rec, source.cuts(test_split), dec_settings["mode"], dec_settings["beam"], dec_settings["ctc_weight"],
                       progress=progress)
    bits = quant.dim * 32 if row["input"] == "continuous" else quant.bits_per_frame
    return {"input": row["input"], "quantizer": q, "cer": dec["cer"], "wer": dec["wer"], "utterances": dec["utterances"],
            "s_per_step": s_per_step, "epoch_s": s_per_step * steps_per_epoch, "bits_per_second": bits * 25,
            "steps": cfg.optim.max_steps, "final_loss": metrics[-1]["loss"] if metrics else None, "run": str(run),
            "decoding": dec_settings, "jobs": task["jobs"]}


def format_compare(report: dict) -> str:
    lines = [f"Discrete-unit ASR on `{report['test_split']}` ({report['mode']} decoding, beam {report['beam']}, "
             f"CTC weight {report['ctc_weight']}):",
             "", "| input | CER | WER | time per epoch (s) | input bits/s |", "|---|---|---|---|---|"]
    for name, r in report["rows"].items():
        lines.append(f"| {name} | {r['cer']:.2f} | {r['wer']:.2f} | {r['epoch_s']:.1f} | {r['bits_per_second']:.0f} |")
    if shared := sorted({r.get("jobs", 1) for r in report["rows"].values()} - {1}):
        lines += ["", f"Times per epoch were measured with {' or '.join(map(str, shared))} systems training side by side (`--jobs`)."]
    return "\n".join(lines) + "\n"


def parse_ms(text: str, flag: str) -> list[int]:
    try:
        ms = [int(x) for x in text.split(",") if x.strip()] if text else []
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if any(m < 1 for m in ms):
        raise SpeechrqError(f"{flag}: stream counts must be >= 1")
    return ms


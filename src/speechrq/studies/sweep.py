"""``speechrq bench sweep``: which small-scale recipe learns most in a fixed wall-clock budget?

A sweep file names a base config (optionally with ``set``, overrides applied to the
base and every point), a budget and points, each a list of ``KEY=VALUE`` overrides of
the base::

    config: configs/pretrain/tiny.yaml
    set: [quantizer.num_codebooks=8]   # optional: the base recipe is the config with these
    steps: 800                      # the budget: this many steps of the *base* recipe
    points:
      base: []
      lr 1e-3: [optim.lr=1e-3]
      batch 120 s: [data.max_duration=120]

Every point gets the same wall clock, not the same steps: before training, one
step of the point and one of the base are timed on the same synthetic batch
(interleaved, median of several), and the point trains
``steps * t_base / t_point`` steps (a point may pin ``optim.max_steps`` itself).
Each point's final checkpoint is then probed with phone recognition (frozen,
weighted layer sum, linear CTC; PER) over several probe seeds, beside a random
initialisation of each preset and the filterbank floor, all in one ``OUT/eval``
so every probe is computed once and a rerun or a longer sweep reuses them.

Outputs: ``OUT/sweep.json`` and ``OUT/sweep.md`` (the table: PER ± std over
probe seeds, steps, the trainer's own training minutes, the realised masked
share, final masked accuracy). Points train one after another and the table is
rewritten after each, so an interrupted sweep keeps what it finished.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..config import ConfigError, load_config, read_yaml
from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text, read_json


def _is_overrides(over) -> bool:
    return isinstance(over, list) and all(isinstance(o, str) and "=" in o for o in over)


def read_sweep(path: str | Path) -> tuple[str, list[str], int, dict[str, list[str]]]:
    """``(config, base overrides, steps, {point: overrides})`` from a sweep file, validated."""
    spec = read_yaml(path)
    if not isinstance(spec, dict) or set(spec) - {"config", "set", "steps", "points"} or "config" not in spec or "points" not in spec:
        raise ConfigError(f"{path}: a sweep file has the keys config, set (optional), steps, points")
    steps, points, base = spec.get("steps", 800), spec["points"], spec.get("set", [])
    if not _is_overrides(base):
        raise ConfigError(f"{path}: set: a list of KEY=VALUE strings, got {base!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{path}: steps: a positive integer, got {steps!r}")
    if not isinstance(points, dict) or not points:
        raise ConfigError(f"{path}: points: a mapping of names to lists of KEY=VALUE overrides")
    for name, over in points.items():
        if not _is_overrides(over):
            raise ConfigError(f"{path}: points.{name}: a list of KEY=VALUE strings, got {over!r}")
        if any(c in str(name) for c in "/@"):
            raise ConfigError(f"{path}: points.{name}: a name without '/' or '@'")
    return str(spec["config"]), list(base), steps, {str(k): list(v) for k, v in points.items()}


def time_step_ratio(base, point, utterance_seconds: float, rounds: int = 6) -> float:
    """``t_point / t_base``: median step times of the two configs on one synthetic batch, interleaved."""
    import torch

    from ..features import FeatureStats, LogMel
    from ..pretrain.bench import _Variant, synthetic_batch

    times = []
    for cfg in (base, point):
        audio, audio_lens = synthetic_batch(cfg.data.max_duration, torch.device("cpu"), utterance_seconds=utterance_seconds)
        feats, lens = LogMel()(audio, audio_lens)
        valid = feats[torch.arange(feats.shape[1])[None] < lens[:, None]]
        stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))
        times.append(_Variant("x", cfg, stats, torch.device("cpu"), feats, lens))
    for v in times:
        v.step(0)
    for i in range(rounds):
        for v in (times if i % 2 == 0 else times[::-1]):
            v.timed_step(i + 1)
    return statistics.median(times[1].times) / statistics.median(times[0].times)


def recipe_sweep(sweep: str | Path, corpus: str | Path, out: str | Path, seeds: int = 3, epochs: int = 30,
                 only: list[str] | None = None, progress: bool = True) -> dict:
    """Train every point of ``sweep`` for the same wall clock, probe PR, write ``OUT/sweep.{json,md}``."""
    from ..checkpoint import latest_checkpoint, read_meta
    from ..data.corpus import load_cuts
    from ..encoders import load_encoder
    from ..evaluate.run import evaluate
    from ..pretrain.config import PretrainConfig
    from ..pretrain.trainer import train
    from ..training.engine import read_metrics
    from .quality import training_minutes

    config, base_over, steps, points = read_sweep(sweep)
    unknown = sorted(set(only or ()) - set(points))
    if unknown:
        raise SpeechrqError(f"--only: {', '.join(unknown)}: not a point of {sweep} (it has {', '.join(points)})")
    out = Path(out)
    report_path = out / "sweep.json"
    from ..schema import load
    from ..formats import sweep_resume

    report = load(report_path, sweep_resume) if report_path.exists() else {}
    # OUT holds one sweep: the same base config and overrides, corpus content and budget; points may be added
    from ..identity import corpus_fingerprint, describe_difference

    made = {"config": config, "set": base_over, "corpus_fingerprint": corpus_fingerprint(corpus), "budget_steps": steps}
    if report and (why := describe_difference({k: report.get(k) for k in made}, made)):
        raise SpeechrqError(f"{report_path}: a sweep of other settings ({why}); use another --out or delete it")
    report.update({"sweep": str(sweep), "corpus": str(corpus), "probe_seeds": seeds, "epochs": epochs} | made)
    rows = report.setdefault("points", {})
    for name, over in points.items():
        if name in rows and rows[name].get("overrides") != over:
            raise SpeechrqError(f"{report_path}: point {name!r} was run with {rows[name].get('overrides')}, the sweep now says {over}; "
                                "rename the point, or use another --out")
    base = load_config(PretrainConfig, config, [f"data.corpus={corpus}", *base_over, "out_dir=unused"])
    utt = statistics.mean(c.duration for c in load_cuts(corpus, "train"))
    for name, over in points.items():
        if only and name not in only:
            continue
        run = out / "runs" / name.replace(" ", "_")
        cfg = load_config(PretrainConfig, config, [f"data.corpus={corpus}", *base_over, *over, f"out_dir={run}"])
        last = latest_checkpoint(run / "checkpoints")
        if last is None or "max_steps" not in (rows.get(name) or {}):
            pinned = any(o.startswith("optim.max_steps=") for o in over)
            ratio = 1.0 if pinned or not over else time_step_ratio(base, cfg, utt)
            n = cfg.optim.max_steps if pinned else max(1, round(steps / ratio))
            rows[name] = {"overrides": over, "step_time_ratio": ratio, "max_steps": n}
            atomic_write_json(report_path, report)
        n = rows[name]["max_steps"]
        cfg = load_config(PretrainConfig, config, [f"data.corpus={corpus}", *base_over, *over, f"out_dir={run}", f"optim.max_steps={n}",
                                                   f"train.checkpoint_every={n}", "train.keep_last=1"])
        if progress and (last is None or read_meta(last)["step"] < n):
            print(f"sweep: {name}: {n} steps ({' '.join(over) or 'the base recipe'})", flush=True)
        train(cfg, resume=last is not None, progress=progress)  # a finished point is reused only with the same config and inputs
        ckpt = latest_checkpoint(run / "checkpoints")
        metrics = [r for r in read_metrics(run) if "acc" in r]
        rows[name].update({"checkpoint": str(ckpt), "preset": cfg.model.preset, "minutes": max(training_minutes(run).values(), default=0.0),
                           "masked_fraction": statistics.mean(r["masked_fraction"] for r in metrics if "masked_fraction" in r),
                           "acc": metrics[-1]["acc"] if metrics else None, "loss": metrics[-1]["loss"] if metrics else None})
        atomic_write_json(report_path, report)

    # one evaluation over every finished point, the baselines once (per preset), probes reused from earlier calls
    done = {name: Path(r["checkpoint"]) for name, r in rows.items() if r.get("checkpoint")}
    encoders = {name: load_encoder(c) for name, c in done.items()}
    # the baselines by evaluate's rule (the corpus's own statistics, each point's preset named, several init seeds),
    # whatever points finished and in whatever order
    from ..evaluate.baselines import INIT_SEEDS, make_baselines
    from ..evaluate.splits import DEFAULT_FOLD

    groups, rules = {}, {}
    for i, preset in enumerate(sorted({rows[n]["preset"] for n in done})):
        made, grouped, rule = make_baselines(corpus, [DEFAULT_FOLD], i == 0, preset, INIT_SEEDS, progress=progress)
        for name, members in grouped.items():  # one random-init row per preset: random-init-tiny, ...
            renamed = {f"{m} {preset}": made.pop(m) for m in members}
            made |= renamed
            groups[f"{name}-{preset}"] = list(renamed)
            rules[f"{name}-{preset}"] = rule.pop(name)
        rules |= rule
        encoders |= made
    results = evaluate(encoders, corpus, ["pr"], out / "eval", [1e-3, 1e-2], epochs, progress=progress, target_analysis=False,
                       seeds=seeds, groups=groups, baselines=rules)
    scores = {name: m["tasks"]["pr"] for name, m in results["models"].items() if "pr" in m["tasks"]}
    report["scores"] = {name: {"per": s["test"], "std": s["test_std"], "dev_per": s["dev"]} for name, s in scores.items()}
    report["baselines"] = rules
    atomic_write_json(report_path, report)
    atomic_write_text(out / "sweep.md", format_sweep(report))
    return report


def format_sweep(report: dict) -> str:
    """The sweep's markdown table, the lowest dev PER first (points are ranked on dev, reported on test), baselines below."""
    scores, rows = report["scores"], report["points"]
    on_dev = all("dev_per" in v for v in scores.values())
    lines = [f"PR (PER %, frozen, linear CTC; mean ± std over {report['probe_seeds']} probe seeds) after the wall clock of "
             f"{report['budget_steps']} steps of `{report['config']}`" + "".join(f" `{o}`" for o in report.get("set") or ())
             + " (step times measured per point); " + ("ranked by dev PER, test PER reported" if on_dev else
                                                       "ranked by test PER (a sweep made before issue 35, which ranks on dev)") + ":", ""]
    scored = sorted((n for n in rows if n in scores), key=lambda n: scores[n]["dev_per" if on_dev else "per"])
    timed = all("minutes" in rows[n] for n in scored)  # minutes taken out of a shipped JSON (timings_removed) are not shown
    lines += (["| point | overrides | steps | training min | masked share | masked acc | PER |", "|---|---|---|---|---|---|---|"] if timed
              else ["| point | overrides | steps | masked share | masked acc | PER |", "|---|---|---|---|---|---|"])
    for name in scored:
        r, s = rows[name], scores[name]
        lines.append(f"| {name} | {' '.join(f'`{o}`' for o in r['overrides']) or '(base)'} | {r['max_steps']} | "
                     + (f"{r['minutes']:.1f} | " if timed else "") + f"{r['masked_fraction']:.2f} | {r['acc']:.3f} | {s['per']:.2f} ± {s['std']:.2f} |")
    for name in sorted(n for n in scores if n not in rows):
        lines.append(f"| {name} | baseline | - | " + ("- | " if timed else "") + f"- | - | {scores[name]['per']:.2f} ± {scores[name]['std']:.2f} |")
    if not timed and report.get("timings_removed"):
        lines += ["", f"Training minutes and step-time ratios: not shown. {report['timings_removed']}",
                  "The steps column is each point's budget, set from its step-time ratio, so it too comes from those shared-core timings."]
    if report.get("baselines"):
        from ..evaluate.baselines import describe_baselines

        lines += describe_baselines(report["baselines"], report["probe_seeds"])
    elif set(scores) - set(rows):
        lines += ["", "Baselines made before issue 35: the filterbank was normalised with the first finished point's statistics "
                  "and each random-init row is one initialisation copying a point's configuration (its spread holds probe seeds only)."]
    return "\n".join(lines) + "\n"

"""``speechrq bench quality``: does pre-training pay off, and after how many steps and minutes?

Pre-train a config for a budget (resuming, or reusing a finished run), probe every
``every``-th checkpoint with the phone recognition probe (and optionally the
fine-tuning probe) over several probe seeds, beside a random initialisation of
the same shape and the filterbank floor, and report:

- the first step, and the training wall-clock minutes to it, at which the encoder
  beats *both* baselines beyond probe noise (its mean error below the stronger
  baseline's by more than the two standard deviations added);
- the margin over the stronger baseline at every probed step, and at the demo's
  budget;
- ``quality.json`` and ``quality.png`` (error against step, baselines as bands).

Wall-clock minutes are the trainer's own step times (``s_per_step`` of
``metrics.jsonl``, summed), so probes and checkpoint writes do not count.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import latest_checkpoint, read_meta
from ..config import load_config
from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json

BASELINES = ("random-init", "fbank")


def training_minutes(run: str | Path) -> dict[int, float]:
    """``{step: minutes of training up to it}`` from a run's ``metrics.jsonl`` (each record covers ``log_every`` steps)."""
    from ..training.engine import read_metrics

    minutes, total, last = {}, 0.0, 0
    for rec in read_metrics(run):
        if "s_per_step" not in rec:
            continue
        total += rec["s_per_step"] * (rec["step"] - last) / 60.0
        last = rec["step"]
        minutes[rec["step"]] = total
    return minutes


def headline(results: dict, run_name: str, task: str, minutes: dict[int, float], demo_step: int | None) -> dict:
    """The first step beating both baselines beyond noise, the margins per step, and the margin at ``demo_step``."""
    models = results["models"]
    base = {b: models[b]["tasks"][task] for b in BASELINES if b in models and task in models[b]["tasks"]}
    if not base:
        raise SpeechrqError(f"quality: no baseline scored {task}")
    # the stronger baseline is chosen on dev (error rates: lower is stronger) and reported on test
    strongest = min(base, key=lambda b: base[b]["dev"])
    floor, floor_std = base[strongest]["test"], base[strongest]["test_std"]
    points = sorted((m["step"], name) for name, m in models.items() if name.rsplit("@", 1)[0] == run_name and task in m["tasks"])
    curve, first = [], None
    for step, name in points:
        r = models[name]["tasks"][task]
        margin = floor - r["test"]
        noise = floor_std + r["test_std"]
        wall = minutes.get(step, max([m for s, m in minutes.items() if s <= step], default=0.0))
        curve.append({"step": step, "minutes": wall, "error": r["test"], "dev_error": r["dev"], "std": r["test_std"], "margin": margin,
                      "beyond_noise": margin > noise})
        if first is None and margin > noise:
            first = curve[-1]
    at_demo = next((c for c in curve if c["step"] == demo_step), None)
    return {"task": task, "metric": base[strongest]["metric"], "baselines": {b: {"error": v["test"], "std": v["test_std"]}
                                                                             for b, v in base.items()},
            "stronger_baseline": strongest, "curve": curve, "first_beyond_noise": first, "demo_step": demo_step, "at_demo_step": at_demo,
            "best": min(curve, key=lambda c: c["dev_error"]) if curve else None}


def quality_benchmark(config: str | Path, corpus: str | Path, out: str | Path, steps: int, every: int, tasks: list[str],
                      seeds: int = 3, demo_step: int | None = 1000, overrides: list[str] = (), progress: bool = True,
                      finetune=None, epochs: int = 30) -> dict:
    """Train (or reuse) ``OUT/run``, probe it every ``every`` steps in ``OUT/eval``, write ``OUT/quality.{json,png}``."""
    from ..encoders import load_encoder
    from ..evaluate.finetune import FinetuneConfig
    from ..evaluate.run import evaluate, resolve_checkpoints
    from ..pretrain.config import PretrainConfig
    from ..pretrain.trainer import train

    if steps < 1 or every < 1 or steps % every:
        raise SpeechrqError(f"--steps {steps} / --every {every}: both positive, and steps a multiple of every")
    out = Path(out)
    run = out / "run"
    cfg = load_config(PretrainConfig, config, [*overrides, f"data.corpus={corpus}", f"out_dir={run}", f"optim.max_steps={steps}",
                                               f"train.checkpoint_every={every}", f"train.keep_last={steps // every + 1}"])
    # resumed, or reused when finished, only if its config and inputs are the same (else refused, naming the difference)
    train(cfg, resume=latest_checkpoint(run / "checkpoints") is not None, progress=progress)
    checkpoints = resolve_checkpoints([run], every)
    encoders = {name: load_encoder(c) for name, c in checkpoints.items()}
    # the baselines by evaluate's rule: the corpus's own statistics, the run's preset named, several init seeds
    from ..evaluate.baselines import INIT_SEEDS, make_baselines
    from ..evaluate.splits import DEFAULT_FOLD

    made, groups, rule = make_baselines(corpus, [DEFAULT_FOLD], True, cfg.model.preset, INIT_SEEDS, progress=progress)
    encoders |= made
    steps_of = {name: int(read_meta(c)["step"]) for name, c in checkpoints.items()}
    results = evaluate(encoders, corpus, tasks, out / "eval", [1e-3, 1e-2], epochs, progress=progress, steps=steps_of,
                       target_analysis=False, seeds=seeds, finetune=finetune or FinetuneConfig(), groups=groups, baselines=rule)
    minutes = training_minutes(run)
    report = {"config": str(config), "corpus": str(corpus), "steps": steps, "every": every, "probe_seeds": seeds, "epochs": epochs,
              "overrides": list(overrides), "baselines": rule,
              "tasks": {t: headline(results, "run", t, minutes, demo_step) for t in tasks}}
    atomic_write_json(out / "quality.json", report)
    plot_quality(report, out / "quality.png")
    return report


def format_quality(report: dict) -> str:
    lines = []
    for task, h in report["tasks"].items():
        m = h["metric"].upper()
        timed = all("minutes" in c for c in h["curve"])  # minutes taken out of a shipped JSON (timings_removed) are not shown
        base = ", ".join(f"{b} {v['error']:.2f} ± {v['std']:.2f}" for b, v in h["baselines"].items())
        lines += [f"{task}: {m}; baselines {base} (stronger: {h['stronger_baseline']})", ""]
        lines += ([f"| step | training min | {m} | margin over {h['stronger_baseline']} | beyond noise |", "|---|---|---|---|---|"] if timed
                  else [f"| step | {m} | margin over {h['stronger_baseline']} | beyond noise |", "|---|---|---|---|"])
        lines += [f"| {c['step']} | " + (f"{c['minutes']:.1f} | " if timed else "") + f"{c['error']:.2f} ± {c['std']:.2f} | "
                  f"{c['margin']:+.2f} | {'yes' if c['beyond_noise'] else 'no'} |" for c in h["curve"]]
        f = h["first_beyond_noise"]
        lines.append("")
        lines.append(("never beyond noise in this budget" if not f else
                      f"first beyond noise: step {f['step']} after {f['minutes']:.1f} training minutes (margin {f['margin']:+.2f})"
                      if "minutes" in f else f"first beyond noise: step {f['step']} (margin {f['margin']:+.2f})"))
        if h["at_demo_step"]:
            lines.append(f"at the demo's budget (step {h['demo_step']}): margin {h['at_demo_step']['margin']:+.2f}")
        if not timed and report.get("timings_removed"):
            lines += ["", f"Training minutes: not shown. {report['timings_removed']}"]
        lines.append("")
    if report.get("baselines"):
        from ..evaluate.baselines import describe_baselines

        lines += describe_baselines(report["baselines"], report["probe_seeds"])[1:] + [""]
    else:
        lines += ["Made before issue 35: the baselines were normalised with the run's own statistics, random init was one "
                  "initialisation copying the run's configuration (its spread holds probe seeds only), and the stronger "
                  "baseline was chosen on test.", ""]
    return "\n".join(lines)


def plot_quality(report: dict, path: Path) -> None:
    """One panel per task: the encoder's error (± std) against the step, each baseline a band, in the colours of
    :mod:`speechrq.palette` (the pre-trained encoder BEST-RQ's, each baseline its own: the same on every figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..palette import BEST_RQ, color

    tasks = report["tasks"]
    with plt.rc_context({"font.size": 10}):
        fig, axes = plt.subplots(1, len(tasks), figsize=(7.0 * len(tasks), 3.8), squeeze=False, layout="constrained")
        for ax, (task, h) in zip(axes[0], tasks.items()):
            xs = [c["step"] for c in h["curve"]]
            ys = [c["error"] for c in h["curve"]]
            sd = [c["std"] for c in h["curve"]]
            ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, color=BEST_RQ, label="BEST-RQ (pre-trained)")
            for name, b in h["baselines"].items():
                c = color(name)
                ax.axhline(b["error"], color=c, linestyle="--", label=f"{name} (± std band)")
                ax.axhspan(b["error"] - b["std"], b["error"] + b["std"], color=c, alpha=0.15)
            if h["first_beyond_noise"]:
                ax.axvline(h["first_beyond_noise"]["step"], color="#444444", linestyle=":", label="first beyond noise")
            if all("minutes" in c for c in h["curve"]):  # no minutes axis where they were taken out (timings_removed)
                top = ax.secondary_xaxis("top", functions=_step_to_minutes(h["curve"]))
                top.set_xlabel("training minutes", fontsize=9)
            ax.set_xlabel("pre-training step")
            ax.set_ylabel(f"{task.upper()}: {h['metric'].upper()} (%) ↓")
            ax.margins(x=0.04)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _step_to_minutes(curve: list[dict]):
    """Linear maps step <-> training minutes through the curve's points, for the secondary axis."""
    import numpy as np

    s = np.array([0.0] + [c["step"] for c in curve])
    m = np.array([0.0] + [c["minutes"] for c in curve])
    return (lambda x: np.interp(x, s, m), lambda y: np.interp(y, m, s))


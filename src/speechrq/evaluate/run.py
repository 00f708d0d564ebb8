"""``speechrq evaluate``: probe several encoders on one corpus and write the results.

Outputs in ``OUT``: ``results.json`` (every number, the layer weights, the lr
sweep), ``results.md`` (the paper's Table 1 layout with Avg) and
``layer_weights.png`` (Figure 4: weighted-sum weights per task, models side by side).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text
from .featurizer import FrozenEncoder, HiddenStateCache, cache_hidden_states
from .probes import TASKS, StateStore, label_of, run_probe, superb_average


def model_name(checkpoint: str | Path) -> str:
    """``exp/demo/stage0/checkpoints/step_00000400`` -> ``stage0@400``."""
    p = Path(checkpoint)
    step = p.name.split("_")[-1].lstrip("0") or "0"
    run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
    return f"{run}@{step}"


def evaluate(encoders: dict[str, FrozenEncoder], corpus: str | Path, tasks: list[str], out: str | Path, lrs: list[float],
             epochs: int, cache_root: str | Path | None = None, progress: bool = True) -> dict:
    from ..data.corpus import load_cuts

    for t in tasks:
        if t not in TASKS:
            raise SpeechrqError(f"--tasks: {t!r} is not one of {', '.join(TASKS)}")
    out = Path(out)
    cache_root = Path(cache_root) if cache_root else out / "hidden_states"
    cuts = {split: load_cuts(corpus, split) for split in ("train", "dev", "test")}
    results: dict = {"corpus": str(corpus), "tasks": tasks, "lrs": lrs, "epochs": epochs, "models": {}}
    for name, enc in encoders.items():
        cache = HiddenStateCache(cache_root, enc.fingerprint)
        computed = sum(cache_hidden_states(enc, cuts[s], cache, progress=progress) for s in cuts)
        labelled = {t: {s: [(c.id, label_of(t, c)) for c in cuts[s]] for s in cuts} for t in tasks}
        data = {t: {s: [(i, lab) for i, lab in labelled[t][s] if lab is not None] for s in cuts} for t in tasks}
        needed = sorted({i for t in tasks for s in cuts for i, _ in data[t][s]})
        store = StateStore(cache, needed)
        probed = {}
        for t in tasks:
            if not all(data[t][s] for s in cuts):
                raise SpeechrqError(f"{corpus}: task {t} needs labels in train, dev and test")
            r = probed[t] = run_probe(t, store, data[t], lrs, epochs)
            if progress:
                print(f"{name}: {t} {r.metric} {r.test:.2f} (dev {r.dev:.2f}, lr {r.lr:g}, epoch {r.epoch})")
        results["models"][name] = {"fingerprint": enc.fingerprint, "utterances_encoded": computed,
                                   "tasks": {t: asdict(r) for t, r in probed.items()}, "avg": superb_average(probed)}
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_table(results))
    plot_layer_weights(results, out / "layer_weights.png")
    return results


def format_table(results: dict) -> str:
    tasks = results["tasks"]
    head = {"asr": "ASR WER ↓", "sid": "SID acc ↑", "ic": "IC acc ↑", "er": "ER acc ↑"}
    lines = ["| model | " + " | ".join(head[t] for t in tasks) + " | Avg ↑ |", "|---" * (len(tasks) + 2) + "|"]
    for name, m in results["models"].items():
        cells = [f"{m['tasks'][t]['test']:.2f}" for t in tasks]
        avg = "-" if m["avg"] is None else f"{m['avg']:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg} |")
    return "\n".join(lines) + "\n"


def plot_layer_weights(results: dict, path: Path) -> None:
    """Figure 4: one heatmap per model, rows = tasks, columns = layers (-1 = front end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(3 + 2.5 * len(models), 0.6 * len(results["tasks"]) + 1.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        w = np.array([m["tasks"][t]["layer_weights"] for t in results["tasks"]])
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0)
        ax.set_title(name, fontsize=9)
        ax.set_yticks(range(len(results["tasks"])), [t.upper() for t in results["tasks"]])
        ax.set_xticks(range(w.shape[1]), [str(i - 1) for i in range(w.shape[1])], fontsize=7)
        ax.set_xlabel("layer (-1 = front end)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("weighted-sum layer weights per task")
    fig.tight_layout()
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)

"""``speechrq bench latent``: Latent-RQ against BEST-RQ at equal steps, over pre-training seeds.

For each pre-training seed ``s`` a BEST-RQ parent is trained for the budget
(``OUT/seed{s}/bestrq``, every tenth of the budget checkpointed); every Latent-RQ
arm branches from that seed's parent (Figure 2: the student starts from the
parent's checkpoint, θ is its encoder) and ends at the same total step, with
``train.seed = s`` (initialisation, data order, masks, heads) and ``quantizer.seed = 1234 + s`` (the random
projections and codebooks): each seed redraws every random part (:data:`SEEDS_DRIVE`). The paper's design
(Sec. 4.1: middle layers, θ refreshed at 20%, 50% and 80% of the budget) is its own arm, the headline. The strong-θ pair continues a
given checkpoint (the shipped reference) for the same number of steps with Mel
targets (``branch_targets: mel``) and with its own latent targets. Every final
encoder is probed (probe seeds inside), and each arm is reported as mean ±
standard deviation over pre-training seeds, with the paired difference to
BEST-RQ (same seed) and its 95% paired t-interval over pre-training seeds, the verdicts after Holm's rule
over the table's comparisons (:mod:`speechrq.studies.significance`). The ``ft`` probe (200 fine-tuning steps, minutes
each) and Figure 3's intermediate points run one probe seed each by default (``ft_probe_seeds``,
``curve_probe_seeds``): their spread is the one over pre-training seeds.

Arms are named in :func:`arms`; a run that finished is reused only through the
trainer's resume check (same config and inputs), and a seed that finished (trained, probed, ranked) is kept whole in
``OUT/seed{s}/seed.json`` keyed by what made it (:func:`_seed_record`), so nothing stale is read and a study resumes
seed by seed where the checkpoints of its finished seeds are gone. Probes of seed ``s`` are in ``OUT/seed{s}/eval``
(Figure 3's points in ``eval_curves``, FT in ``eval_ft``).
Nothing is chosen on the test split: the ranked-best layers come from
``speechrq targets rank`` on dev (``best_layers``), the tables report test.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..checkpoint import latest_checkpoint, list_checkpoints, read_meta, step_dir
from ..config import load_config
from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text

LOWER_IS_BETTER = {"pr", "ft", "asr"}
QUANTIZER_SEED = 1234  # seed s draws its projections and codebooks with quantizer.seed = QUANTIZER_SEED + s
SEEDS_DRIVE = (f"pre-training seed s: train.seed = s (initialisation, data order, masks, heads) and quantizer.seed = "
               f"{QUANTIZER_SEED} + s (random projections and codebooks); the strong-θ pair continues one reference, so its "
               "projections and codebooks are the reference's and seed s draws its heads, data order and masks; probe seeds "
               "inside each")
PAPER_ARM = "paper's design"
LRS = [1e-3, 1e-2]  # the probes' learning rates, chosen on dev


def arms(steps: int, middle: list[int], best: list[int]) -> dict[str, dict]:
    """Arm name -> ``{"branch": fraction of the budget to branch at, "set": overrides}``; ``None`` branch: the parent."""
    half, paper = steps // 2, [steps // 2, steps * 4 // 5]
    fixed = lambda layers: [f"targets.layers=[{','.join(map(str, layers))}]"]  # noqa: E731
    return {
        "BEST-RQ": {"branch": None, "set": []},
        f"Latent-RQ layers {middle} (middle, branch 50%)": {"branch": half, "set": fixed(middle)},
        f"Latent-RQ layers {best} (ranked best, branch 50%)": {"branch": half, "set": fixed(best)},
        "Latent-RQ layers auto (branch 50%)": {"branch": half, "set": ["targets.layers=auto"]},
        f"Latent-RQ layers {middle}, {PAPER_ARM} (20/50/80%)": {"branch": steps // 5,
                                                                 "set": [*fixed(middle), f"targets.refresh_at=[{paper[0]},{paper[1]}]"]},
        f"Latent-RQ layers {best}, paper schedule (20/50/80%)": {"branch": steps // 5,
                                                                   "set": [*fixed(best), f"targets.refresh_at=[{paper[0]},{paper[1]}]"]},
        f"Latent-RQ layers {best}, lr continues": {"branch": half, "set": [*fixed(best), "targets.lr_after_refresh=continue"]},
        f"Latent-RQ layers {best}, no standardisation": {"branch": half, "set": [*fixed(best), "targets.standardize=false"]},
    }


def _train(config, corpus, run: Path, overrides: list[str], progress: bool) -> Path:
    from ..pretrain.config import PretrainConfig
    from ..pretrain.trainer import train

    cfg = load_config(PretrainConfig, config, [*overrides, f"data.corpus={corpus}", f"out_dir={run}"])
    train(cfg, resume=latest_checkpoint(run / "checkpoints") is not None, progress=progress)
    return latest_checkpoint(run / "checkpoints")


def _reference_arms(reference_steps: int, layers: list[int]) -> dict[str, list[str]]:
    """The strong-θ pair: arm name -> its overrides (Mel targets; its own latent targets from ``layers``)."""
    return {f"reference + {reference_steps} BEST-RQ steps": ["targets.branch_targets=mel"],
            f"reference + {reference_steps} Latent-RQ steps, layers {layers}": [f"targets.layers=[{','.join(map(str, layers))}]"]}


def _made_by(setup: dict, parent_config, latent_config, corpus, reference) -> dict:
    """What a seed's record is keyed by: the study's settings, both configs as resolved, the corpus's content and
    statistics, the reference's weights and speechrq's version (JSON-plain, as it reads back)."""
    import json

    from .. import __version__
    from ..config import config_to_dict
    from ..features import STATS_FILE
    from ..identity import corpus_fingerprint
    from ..io import file_fingerprint
    from ..pretrain.config import PretrainConfig

    stats = Path(corpus) / STATS_FILE
    made_by = {"setup": setup, "version": __version__,
               "configs": {which: config_to_dict(load_config(PretrainConfig, path, [f"data.corpus={corpus}"]))
                           for which, path in (("parent", parent_config), ("latent", latent_config))},
               "corpus": corpus_fingerprint(corpus), "feature_stats": file_fingerprint(stats) if stats.exists() else None,
               "reference": file_fingerprint(Path(reference) / "model.safetensors") if reference is not None else None}
    return json.loads(json.dumps(made_by))


def _seed_record(seed: int, setup: dict, made_by: dict, parent_config, latent_config, corpus, out: Path, reference,
                 ref_step: int | None, progress: bool) -> dict:
    """One pre-training seed's share of the study: train its parent, arms and strong-θ pair (reusing finished runs),
    probe the final encoders, probe Figure 3's points and rank θ at the branch step. Kept in ``OUT/seed{s}/seed.json``
    (:func:`speechrq.formats.latent_seed`) and reused whole while ``made_by`` is the same, so a seed that finished
    needs neither its checkpoints nor its probes again: the study resumes seed by seed on another machine from these
    records and the runs' ``metrics.jsonl``."""
    from ..encoders import load_encoder
    from ..evaluate.finetune import FinetuneConfig
    from ..evaluate.run import evaluate
    from ..formats import latent_seed
    from ..schema import load

    root = out / f"seed{seed}"
    path = root / "seed.json"
    if path.exists():
        saved = load(path, latent_seed)
        if saved["made_by"] == made_by:
            return saved
    steps, plan = setup["steps"], setup["plan"]
    seeds_set = [f"train.seed={seed}", f"quantizer.seed={QUANTIZER_SEED + seed}", f"train.checkpoint_every={steps // 10}",
                 "train.keep_last=11"]
    runs = {"BEST-RQ": _train(parent_config, corpus, root / "bestrq", [f"optim.max_steps={steps}", *seeds_set], progress)}
    for name, arm in plan.items():
        if arm["branch"] is None:
            continue
        start = step_dir(root / "bestrq" / "checkpoints", arm["branch"])
        if not start.exists():
            raise SpeechrqError(f"{start}: missing; the parent keeps every tenth of the budget")
        runs[name] = _train(latent_config, corpus, root / _slug(name),
                            [*arm["set"], f"targets.init_from={start}", f"optim.max_steps={steps}", *seeds_set], progress)
    if reference is not None:  # the strong θ: the reference continued, Mel against its latent targets
        # a continuation keeps the reference's projections and codebooks (Latent-RQ's stages share them): its
        # quantizer is the reference's, and seed s draws the heads, data order and masks
        more = setup["reference_steps"]
        common = [*setup["reference_set"], f"targets.init_from={reference}", f"optim.max_steps={ref_step + more}",
                  f"train.seed={seed}", f"train.checkpoint_every={max(1, more // 10)}", "train.keep_last=11"]
        for name, extra in _reference_arms(more, setup["reference_layers"]).items():
            runs[name] = _train(latent_config, corpus, root / _slug(name), [*extra, *common], progress)
    named = {f"{_slug(name)}@s{seed}": name for name in runs}
    encoders = {key: load_encoder(runs[name]) for key, name in named.items()}
    scores: dict[str, dict] = {name: {} for name in runs}
    quick = [t for t in setup["tasks"] if t != "ft"]
    if quick:
        res = evaluate(encoders, corpus, quick, root / "eval", LRS, setup["epochs"], progress=progress, target_analysis=False,
                       seeds=setup["probe_seeds"])
        for key, m in res["models"].items():
            scores[named[key]] |= {task: r["test"] for task, r in m["tasks"].items()}
    ft_arms = setup["ft_arms"]
    chosen = {k: e for k, e in encoders.items() if ft_arms is None or named[k] in ft_arms}
    if "ft" in setup["tasks"] and chosen:
        ft = evaluate(chosen, corpus, ["ft"], root / "eval_ft", LRS, setup["epochs"], progress=progress, target_analysis=False,
                      seeds=setup["ft_probe_seeds"], finetune=FinetuneConfig(steps=setup["ft_steps"]))
        for key, m in ft["models"].items():
            scores[named[key]]["ft"] = m["tasks"]["ft"]["test"]
    del encoders
    points = {arm: st for arm, st in setup["curve_points"].items() if arm in runs}
    record = {"made_by": made_by, "runs": {name: str(ckpt) for name, ckpt in runs.items()},
              "histories": {name: read_meta(ckpt).get("history") for name, ckpt in runs.items()}, "scores": scores,
              "curves": curves(root, corpus, {arm: {seed: runs[arm]} for arm in points}, points, setup["curve_probe_seeds"],
                               progress, setup["epochs"]),
              "theta_ranking": rank_theta(step_dir(root / "bestrq" / "checkpoints", steps // 2), corpus, root / "rank_theta.json")}
    atomic_write_json(path, record)
    return load(path, latent_seed)  # as a later call reads it


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def summarize(values: dict[int, float]) -> dict:
    """Mean and sample standard deviation over pre-training seeds."""
    xs = list(values.values())
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs), "per_seed": values}


def paired(arm: dict[int, float], base: dict[int, float], lower_is_better: bool) -> dict | None:
    """Improvement over the base, paired by seed (positive = better), with its 95% t-interval on n − 1 degrees of
    freedom and two-sided p (:func:`~speechrq.studies.significance.seed_difference`); the verdict is this comparison's
    alone until :func:`family` applies Holm over its table. ``None`` with fewer than 2 shared seeds."""
    from .significance import seed_difference, verdict

    seeds = sorted(set(arm) & set(base))
    if len(seeds) < 2:
        return None
    sign = -1.0 if lower_is_better else 1.0  # improvement: positive is better
    d = seed_difference([sign * base[s] for s in seeds], [sign * arm[s] for s in seeds], paired=True)
    return {"mean": d["difference"], "ci95": d["ci"], "n": len(seeds), "p": d["p"],
            "verdict": verdict(d, d["p"] <= 0.05, lower_is_better=False)}


def family(cells: list[dict], name: str) -> None:
    """Holm's rule over the ``vs_base`` comparisons ``cells`` of one table: each gets ``p_holm``, ``family`` and its
    verdict (``better``/``worse`` only when Holm rejects)."""
    from .significance import apply_family

    apply_family(cells, name, lower_is_better=False,  # a cell's mean is an improvement: positive is better
                 view=lambda c: {"difference": c["mean"], "ci": c["ci95"], "p": c["p"]})


def latent_study(parent_config: str | Path, latent_config: str | Path, corpus: str | Path, out: str | Path, seeds: list[int], steps: int,
                 best_layers: list[int], tasks: list[str], probe_seeds: int = 3, reference: str | Path | None = None,
                 reference_layers: list[int] | None = None, reference_set: list[str] = (), progress: bool = True,
                 ft_arms: list[str] | None = None, epochs: int = 30, ft_steps: int = 200, ft_probe_seeds: int = 1,
                 curve_probe_seeds: int = 1, middle_layers: list[int] = (1, 2), only_arms: list[str] | None = None,
                 reference_steps: int | None = None) -> dict:
    """Train every arm for every seed (reusing finished runs), probe the final encoders, write ``OUT/study.{json,md}``.

    ``only_arms``: the arms to run besides BEST-RQ (default: all of :func:`arms`). ``reference_steps``: how long the
    strong-θ pair continues the reference (default: half the budget), every tenth checkpointed and every fifth probed for
    its own Figure 3 curve. Each seed's share is kept whole once finished (:func:`_seed_record`)."""
    from ..pretrain.config import PretrainConfig

    out = Path(out)
    if steps < 10 or steps % 10:
        raise SpeechrqError(f"--steps {steps}: a positive multiple of 10 (branch points are tenths of the budget)")
    load_config(PretrainConfig, latent_config, [f"data.corpus={corpus}"])  # checked before any work
    plan = arms(steps, list(middle_layers), list(best_layers))
    if only_arms is not None:
        if (unknown := [a for a in only_arms if a not in plan]):
            raise SpeechrqError(f"--arms: no arm named {', '.join(map(repr, unknown))}; the arms are: {'; '.join(plan)}")
        plan = {name: arm for name, arm in plan.items() if name == "BEST-RQ" or name in only_arms}
    reference_steps = reference_steps or steps // 2
    if reference_steps < 1:
        raise SpeechrqError(f"--reference-steps {reference_steps}: must be >= 1")
    if ft_arms is not None and (unknown := [a for a in ft_arms if a not in plan and not a.startswith("reference")]):
        raise SpeechrqError(f"--ft-arms: no arm named {', '.join(map(repr, unknown))}; the arms are: {'; '.join(plan)}")
    ref_step = int(read_meta(reference)["step"]) if reference is not None else None
    best_arm = next((n for n in plan if "ranked best, branch" in n), None)
    paper_arm = next((n for n in plan if PAPER_ARM in n), None)
    points = {"BEST-RQ": [steps // 2, steps * 4 // 5]} | ({paper_arm: [steps // 2, steps * 4 // 5]} if paper_arm else {}) | (
        {best_arm: [steps * 3 // 5, steps * 4 // 5]} if best_arm else {})
    if reference is not None:  # the strong-θ pair's own Figure 3: every fifth of its continuation
        fifths = sorted({ref_step + reference_steps * i // 5 for i in range(1, 5)} - {ref_step})
        points |= {name: fifths for name in _reference_arms(reference_steps, reference_layers or best_layers)}
    setup = {"plan": plan, "steps": steps, "tasks": tasks, "probe_seeds": probe_seeds, "epochs": epochs, "lrs": LRS,
             "ft_arms": ft_arms, "ft_steps": ft_steps, "ft_probe_seeds": ft_probe_seeds, "curve_points": points,
             "curve_probe_seeds": curve_probe_seeds, "reference_steps": reference_steps,
             "reference_layers": reference_layers or best_layers, "reference_set": list(reference_set)}
    made_by = _made_by(setup, parent_config, latent_config, corpus, reference)
    records = {seed: _seed_record(seed, setup, made_by | {"seed": seed}, parent_config, latent_config, corpus, out, reference,
                                  ref_step, progress) for seed in seeds}
    finals: dict[str, dict[int, Path]] = {name: {} for name in plan}
    for seed, rec in records.items():
        for name, ckpt in rec["runs"].items():
            finals.setdefault(name, {})[seed] = Path(ckpt)
    table: dict[str, dict] = {}
    for name in finals:
        table[name] = {}
        for task in tasks:
            per_seed = {seed: rec["scores"][name][task] for seed, rec in records.items() if task in rec["scores"].get(name, {})}
            if per_seed:
                table[name][task] = summarize(per_seed)
    base_names = {name: ("BEST-RQ" if not name.startswith("reference") else next(n for n in finals if n.startswith("reference") and "BEST-RQ" in n))
                  for name in finals}
    for name, row in table.items():
        base = base_names[name]
        if base == name:
            continue
        for task, cell in row.items():
            if task in table[base]:
                cell["vs_base"] = paired(cell["per_seed"], table[base][task]["per_seed"], task in LOWER_IS_BETTER)
    family([c["vs_base"] for row in table.values() for c in row.values() if c.get("vs_base")], "arms against their base")
    curve: dict = {}
    for seed, rec in records.items():
        for arm, per_step in rec["curves"].items():
            for step, per in per_step.items():
                curve.setdefault(arm, {}).setdefault(step, {}).update(per)
    extras = {"theta_ranking": theta_rankings({str(seed): rec["theta_ranking"] for seed, rec in records.items()}, out, corpus,
                                              reference),
              "curves": curve}
    extras["convergence"] = convergence(finals, extras["curves"], table, "BEST-RQ", best_arm, seeds, steps) if best_arm else None
    extras["stage_gains"] = (stage_gains(extras["curves"], table, "BEST-RQ", paper_arm, [steps // 2, steps * 4 // 5, steps], seeds)
                             if paper_arm else None)
    if extras["stage_gains"]:
        # the last stage end is the paper arm's PR against BEST-RQ at the budget: the arms table's comparison, with its
        # verdict (one comparison, one verdict); the earlier stage ends are a family of their own
        gains = extras["stage_gains"]
        last = gains.get(str(steps))
        if last and last.get("vs_base") and table[paper_arm].get("pr", {}).get("vs_base"):
            last["vs_base"] = dict(table[paper_arm]["pr"]["vs_base"])
        family([g["vs_base"] for e, g in gains.items() if g.get("vs_base") and e != str(steps)], "stage gains before the budget")
    from .significance import FAMILY_RULE

    report = {"steps": steps, "seeds": seeds, "seeds_drive": SEEDS_DRIVE, "family_rule": FAMILY_RULE, "reference_steps": reference_steps,
              "best_arm": best_arm, "paper_arm": paper_arm, **extras, "probe_seeds": probe_seeds,
              "ft_probe_seeds": ft_probe_seeds, "curve_probe_seeds": curve_probe_seeds, "tasks": tasks, "best_layers": best_layers,
              "middle_layers": list(middle_layers), "reference": str(reference) if reference else None, "arms": table,
              "base": base_names, "runs": {name: {str(s): str(p) for s, p in runs.items()} for name, runs in finals.items()},
              "histories": {name: {str(seed): rec["histories"][name] for seed, rec in records.items() if name in rec["histories"]}
                            for name in finals}}
    atomic_write_json(out / "study.json", report)
    atomic_write_text(out / "study.md", format_study(report))
    plot_study(report, out / "study.png")
    return report


def rank_theta(ckpt: Path, corpus, path: Path) -> dict:
    """``targets rank`` (dev) of the checkpoint ``ckpt``, kept in ``path`` and reused while made by the same weights,
    corpus content and ranking settings."""
    from ..evaluate.target_quality import rank_checkpoint
    from ..formats import ranking
    from ..identity import corpus_fingerprint
    from ..io import file_fingerprint, read_json
    from ..schema import OBJECT, check
    from ..targets.rank import DEFAULT_SIGMA, RANK_SEED

    made_by = {"checkpoint": file_fingerprint(ckpt / "model.safetensors"), "corpus": corpus_fingerprint(corpus, "dev"),
               "split": "dev", "seed": RANK_SEED, "sigma": DEFAULT_SIGMA}
    saved = check(read_json(path), OBJECT, path) if path.exists() else None
    if not saved or saved.get("made_by") != made_by:
        saved = {**rank_checkpoint(ckpt, corpus, "dev"), "made_by": made_by}
        atomic_write_json(path, saved)
    ranking(saved, path)  # a kept ranking edited by hand is one line naming the key
    return saved


def theta_rankings(per_seed: dict[str, dict], out: Path, corpus, reference=None) -> dict:
    """``{source: {seed: scores}}`` from each seed's ranking of its θ at the branch step (``per_seed``: seed -> the
    ranking :func:`rank_theta` keeps) and the reference's (ranked here, kept in ``OUT/rank_reference.json``)."""
    rankings = dict(per_seed)
    if reference is not None:
        rankings["reference"] = rank_theta(Path(reference), corpus, out / "rank_reference.json")
    found: dict = {}
    for key, saved in rankings.items():
        for name, r in saved["sources"].items():
            found.setdefault(name, {})[key] = {what: r[what]["knn_accuracy"] if r[what] else None for what in ("phones", "speakers")} | {
                "agreement": r["agreement"]}
        found.setdefault("_agreement_vs_labels", {})[key] = saved["agreement_vs_labels"]
    return found


def curves(out: Path, corpus, finals: dict, points: dict[str, list[int]], probe_seeds: int, progress: bool, epochs: int = 30) -> dict:
    """PR at intermediate steps of some arms (Figure 3's points): ``{arm: {step: {seed: PER}}}``, the budget's from the table."""
    from ..encoders import load_encoder
    from ..evaluate.run import evaluate

    encoders, where = {}, {}
    for arm, steps in points.items():
        for seed, final in finals[arm].items():
            for step in steps:
                ckpt = final.parent / f"step_{step:08d}"
                if ckpt.exists():
                    key = f"{_slug(arm)}@s{seed}@{step}"
                    encoders[key], where[key] = load_encoder(ckpt), (arm, step, seed)
    if not encoders:
        return {}
    res = evaluate(encoders, corpus, ["pr"], out / "eval_curves", [1e-3, 1e-2], epochs, progress=progress, target_analysis=False,
                   seeds=probe_seeds)
    found: dict = {}
    for key, m in res["models"].items():
        arm, step, seed = where[key]
        found.setdefault(arm, {}).setdefault(str(step), {})[str(seed)] = m["tasks"]["pr"]["test"]
    return found


def convergence(runs: dict, curve: dict, table: dict, base: str, arm: str, seeds: list[int], budget: int) -> dict:
    """Section 4.2's claim: the first probed step, and the training minutes to it (θ's cost included: the arm's own
    step times after the parent's up to the branch), at which ``arm`` reaches ``base``'s PR at the budget, per seed;
    ``None`` where it never does. Also θ's measured overhead: the arm's training minutes over the parent's for the
    same steps."""
    from ..training.engine import read_metrics
    from .quality import training_minutes

    final = table[base]["pr"]["per_seed"]
    per_seed, overhead = {}, {}
    for seed in seeds:
        if seed not in final or seed not in table[arm]["pr"]["per_seed"]:
            continue
        points = {int(st): v[str(seed)] for st, v in curve.get(arm, {}).items() if str(seed) in v}
        points[budget] = table[arm]["pr"]["per_seed"][seed]
        parent_run, arm_run = Path(runs[base][seed]).parent.parent, Path(runs[arm][seed]).parent.parent
        parent_min, arm_min = training_minutes(parent_run), training_minutes(arm_run)
        start = min(r["step"] for r in read_metrics(arm_run)) - 1 if arm_min else 0
        start = max((st for st in parent_min if st <= start), default=0)
        reached = next((st for st in sorted(points) if points[st] <= final[seed]), None)

        def minutes_at(step):
            return parent_min.get(start, 0.0) + max((m for st, m in arm_min.items() if st <= step), default=0.0)

        per_seed[str(seed)] = {"step": reached, "minutes": minutes_at(reached) if reached else None,
                               "base_minutes": parent_min.get(budget), "points": points, "base_final": final[seed]}
        own = arm_min.get(budget, 0.0)
        base_same = parent_min.get(budget, 0.0) - parent_min.get(start, 0.0)
        overhead[str(seed)] = own / base_same if base_same else None
    return {"per_seed": per_seed, "time_ratio_same_steps": overhead}


def stage_gains(curve: dict, table: dict, base: str, arm: str, stage_ends: list[int], seeds: list[int]) -> dict:
    """PR improvement of ``arm`` over ``base`` at each stage end (paired by seed): do gains grow, then saturate?"""
    gains = {}
    for end in stage_ends:
        per = {}
        for seed in seeds:
            if end == stage_ends[-1]:
                a, b = table[arm]["pr"]["per_seed"].get(seed), table[base]["pr"]["per_seed"].get(seed)
            else:
                a, b = curve.get(arm, {}).get(str(end), {}).get(str(seed)), curve.get(base, {}).get(str(end), {}).get(str(seed))
            if a is not None and b is not None:
                per[seed] = b - a
        if per:
            gains[str(end)] = {**summarize(per), "vs_base": paired({s: -v for s, v in per.items()}, {s: 0.0 for s in per}, True)}
    return gains


def format_study(report: dict) -> str:
    """The study's table: each arm's mean ± std over pre-training seeds, and its paired difference to its base."""
    tasks = report["tasks"]
    unit = {"pr": "PR PER ↓", "ft": "FT PER ↓", "sid": "SID acc ↑", "er": "ER acc ↑", "ic": "IC acc ↑"}
    lines = [f"{len(report['seeds'])} pre-training seeds ({', '.join(map(str, report['seeds']))}) × {report['probe_seeds']} probe seeds, "
             f"{report['steps']} steps each; test split; Δ: improvement over the arm's base at the same seed "
             "(positive = better), 95% paired t-interval over pre-training seeds" + (
                 f"; verdicts by {report['family_rule']}" if report.get("family_rule") else "; each verdict on its own interval "
                 "(made before issue 35: the quantizer seed fixed at 1234 for every pre-training seed)")
             + (f". Seeds: {report['seeds_drive']}" if report.get("seeds_drive") else ""), "",
             "| arm | " + " | ".join(f"{unit.get(t, t)} | Δ {t.upper()}" for t in tasks) + " |",
             "|---" * (1 + 2 * len(tasks)) + "|"]
    for name, row in report["arms"].items():
        cells = []
        for t in tasks:
            c = row.get(t)
            if c is None:
                cells += ["", ""]
                continue
            cells.append(f"{c['mean']:.2f} ± {c['std']:.2f}")
            v = c.get("vs_base")
            holm = f" Holm p {v['p_holm']:.3f}" if v and v.get("p_holm") is not None else ""
            cells.append(f"{v['mean']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]{holm} {v['verdict']}" if v else "base")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    gains = report.get("stage_gains") or {}
    if gains:
        lines += ["", f"PR gain of {report['paper_arm']} over BEST-RQ at each stage end (mean ± std over seeds, 95% interval):", ""]
        lines += [f"- step {e}: {g['mean']:+.2f} ± {g['std']:.2f}" + (f" [{g['vs_base']['ci95'][0]:+.2f}, {g['vs_base']['ci95'][1]:+.2f}]"
                                                                     if g.get("vs_base") else "") for e, g in sorted(gains.items(), key=lambda kv: int(kv[0]))]
    conv = report.get("convergence") or {}
    if conv.get("per_seed"):
        # the times (minutes, the arm's time over BEST-RQ's) are shown where the JSON holds them: a study whose times were
        # taken out (timings_removed: measured on shared cores) shows the steps alone and says why
        timed = "time_ratio_same_steps" in conv
        lines += ["", f"Convergence (section 4.2): first probed step at which {report['best_arm']} reaches BEST-RQ's PR at step "
                      f"{report['steps']}" + (" (minutes: the trainer's own step times, θ included):" if timed else ":"), ""]
        for seed, c in conv["per_seed"].items():
            ratio = (conv.get("time_ratio_same_steps") or {}).get(seed)
            minutes = f" after {c['minutes']:.1f} min" if c.get("minutes") is not None else ""
            base_minutes = f" after {c.get('base_minutes') or 0:.1f} min" if timed else ""
            lines.append(f"- seed {seed}: " + (f"step {c['step']}{minutes}" if c["step"] else "never in the budget")
                         + f" (BEST-RQ {c['base_final']:.2f}{base_minutes}; points "
                         + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(c["points"].items(), key=lambda kv: int(kv[0])))
                         + (f"; the arm's time over BEST-RQ's for the same steps {ratio:.2f}x)" if ratio else ")"))
        if not timed and report.get("timings_removed"):
            lines += ["", f"Training times: not shown. {report['timings_removed']}"]
    rank = report.get("theta_ranking") or {}
    if rank:
        keys = sorted({k for n, v in rank.items() if not n.startswith("_") for k in v}, key=lambda k: (k == "reference", k))
        lines += ["", "θ's target sources ranked on dev (`speechrq targets rank`, the same codebooks for every source): phone 5-NN % "
                      "/ speaker 5-NN % / perturbation κ, per seed's θ at the branch step" + (" and the reference" if "reference" in keys else ""),
                  "", "| source | " + " | ".join(f"θ seed {k}" if k != "reference" else "reference" for k in keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        for name, per in rank.items():
            if name.startswith("_"):
                continue
            lines.append(f"| {name} | " + " | ".join(" / ".join([*(f"{per[k][w]:.1f}" if per[k][w] is not None else "-"
                                                                   for w in ("phones", "speakers")), f"{per[k]['agreement']:.3f}"])
                                                   if k in per else "" for k in keys) + " |")
        corr = rank.get("_agreement_vs_labels") or {}
        if corr:
            lines += ["", "Spearman correlation of κ with the labelled measures over sources: " + "; ".join(
                f"{k}: " + ", ".join(f"{w} {v:+.2f}" for w, v in c.items() if v is not None) for k, c in corr.items())]
    return "\n".join(lines) + "\n"


def run_steps(run: str | Path) -> list[int]:
    """The steps of a run's kept checkpoints."""
    return [s for s, _ in list_checkpoints(Path(run) / "checkpoints")]


def plot_study(report: dict, path: Path) -> None:
    """The study at a page's width: one panel per probe with the arms named on a shared axis, in the table's order
    (each arm's mean ± std over pre-training seeds as a bar, its seeds as dots, its base's mean as a dashed line), and
    below, Figure 3's PR points over cumulative steps (mean over seeds) for the arms probed at intermediate steps, with
    the legend under them. Every arm has its colour of :mod:`speechrq.palette`, the same on every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    tasks, names = report["tasks"], list(report["arms"])
    curves = report.get("curves") or {}
    panels = [("the budget's arms", {a: p for a, p in curves.items() if not a.startswith("reference")})]
    if (strong := {a: p for a, p in curves.items() if a.startswith("reference")}):
        panels.append(("strong θ: the reference continued", strong))
    panels = [p for p in panels if p[1]]
    unit = {"pr": "PR PER (%)", "ft": "FT PER (%)", "sid": "SID accuracy (%)", "er": "ER accuracy (%)", "ic": "IC accuracy (%)",
            "asr": "ASR WER (%)"}
    with plt.rc_context({"font.size": 10}):
        fig = _study_figure(report, plt, names, tasks, panels, unit)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _study_figure(report: dict, plt, names: list[str], tasks: list[str], panels: list, unit: dict):
    from ..palette import color, short_name

    fig = plt.figure(figsize=(10.0, 1.0 + 0.28 * len(names) + (3.1 if panels else 0.0)), layout="constrained")
    grid = fig.add_gridspec(2 if panels else 1, 1, height_ratios=[1.0 + 0.28 * len(names), 3.1] if panels else [1])
    top = grid[0].subgridspec(1, len(tasks), wspace=0.05).subplots(sharey=True, squeeze=False)[0]
    ys = {n: len(names) - 1 - i for i, n in enumerate(names)}  # the table's first row on top
    for ax, task in zip(top, tasks):
        lo = []
        for n in names:
            c = report["arms"][n].get(task)
            if not c:
                continue
            seeds = list(c["per_seed"].values())
            ax.errorbar([c["mean"]], [ys[n]], xerr=[c["std"]], fmt="o", color=color(n), capsize=3, markersize=6, zorder=3)
            ax.scatter(seeds, [ys[n]] * len(seeds), s=12, color=color(n), alpha=0.45, zorder=2, linewidths=0)
            lo += [c["mean"] - c["std"], c["mean"] + c["std"], *seeds]
        if lo:  # every point and bar inside the panel, with a margin
            pad = 0.08 * (max(lo) - min(lo) or 1.0)
            ax.set_xlim(min(lo) - pad, max(lo) + pad)
        bases = {report["base"][n] for n in names if task in report["arms"][n] and report["base"].get(n) in report["arms"]}
        for b in bases:
            if task in report["arms"][b]:
                ax.axvline(report["arms"][b][task]["mean"], color=color(b), linestyle="--", linewidth=0.9, alpha=0.7, zorder=1)
        ax.set_title(f"{task.upper()} ({'↓ lower is better' if task in LOWER_IS_BETTER else '↑ higher is better'})", fontsize=10)
        ax.set_xlabel(unit.get(task, task.upper()), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.tick_params(axis="x", labelsize=8)
    top[0].set_yticks([ys[n] for n in names], [short_name(n) for n in names], fontsize=9)
    for label, n in zip(top[0].get_yticklabels(), names):
        label.set_color(color(n))
    if panels:
        bottom = grid[1].subgridspec(1, 2, wspace=0.12).subplots(squeeze=False)[0]
        handles = {}
        for ax, (title, group) in zip(bottom, panels):  # Figure 3: PR over cumulative steps, mean over seeds
            for arm, points in group.items():
                steps = sorted(points, key=int)
                # a strong-θ arm's points are every fifth of its continuation: its budget ends one step of them after the last
                last = int(steps[-1]) + int(steps[1]) - int(steps[0]) if arm.startswith("reference") and len(steps) > 1 else report["steps"]
                xs = [int(s) for s in steps] + [last]
                line_ys = [statistics.fmean(points[s].values()) for s in steps] + [report["arms"][arm]["pr"]["mean"]]
                (handles[arm],) = ax.plot(xs, line_ys, marker="o", color=color(arm), label=short_name(arm))
            ax.set_title(f"Figure 3: {title}", fontsize=10)
            ax.set_xlabel("cumulative pre-training step", fontsize=9)
            ax.set_ylabel("PR PER (%) ↓", fontsize=9)
            ax.margins(x=0.06, y=0.12)
            ax.grid(alpha=0.3)
        for ax in bottom[len(panels):]:
            ax.axis("off")
        where = bottom[len(panels)] if len(panels) < len(bottom) else None
        if where is not None:  # the free panel holds the legend
            where.legend(handles.values(), [h.get_label() for h in handles.values()], loc="center left", fontsize=9, frameon=False)
        else:
            fig.legend(handles.values(), [h.get_label() for h in handles.values()], loc="outside lower center", ncol=2, fontsize=9,
                       frameon=False)
    return fig

"""What each reader of speechrq's result JSON relies on (:mod:`speechrq.schema`), one validator per kind of file.

Each validator is ``(data, source) -> data``: the structure its readers index (keys, types, list lengths), then the
references between keys (``best_arm`` names an arm, a difference names two rows, a table's differences follow its
baselines). A hand-edited file (a number as a string, an arm removed, a list where an object was) is one line naming
the file and key, never a traceback or a silent wrong table. Writers are unchanged: a file speechrq wrote passes.
"""

from __future__ import annotations

from typing import Any

from .schema import ANY, BOOL, INT, NUMBER, OBJECT, REST, STRING, Each, ListOf, Maybe, check, invalid, missing, need, opt

CI = ListOf(NUMBER, 2)
TIMINGS_REMOVED = opt("timings_removed")  # a one-line note: why a study's timings were taken out of its JSON


# --- docs/latent_study.json: `speechrq bench latent` (its page, `speechrq report`, the README's headline table)

VS_BASE = {"mean": NUMBER, "ci95": CI, "n": INT, "verdict": STRING}
LATENT_CELL = {"mean": NUMBER, "std": NUMBER, "per_seed": Each(NUMBER, int_keys=True), opt("vs_base"): Maybe(VS_BASE)}
LATENT_STUDY = {
    "steps": INT, "seeds": ListOf(INT), "tasks": ListOf(STRING), "probe_seeds": INT, "best_arm": Maybe(STRING), "paper_arm": Maybe(STRING),
    "middle_layers": ListOf(INT), "best_layers": ListOf(INT), "arms": Each(Each(Maybe(LATENT_CELL))),
    opt("stage_gains"): Maybe(Each({"mean": NUMBER, "std": NUMBER, "vs_base": Maybe(VS_BASE)}, int_keys=True)),
    opt("convergence"): Maybe({
        opt("per_seed"): Each({"step": Maybe(INT), "points": Each(NUMBER, int_keys=True), "base_final": NUMBER,
                               opt("minutes"): Maybe(NUMBER), opt("base_minutes"): Maybe(NUMBER)}),
        opt("time_ratio_same_steps"): Each(Maybe(NUMBER))}),
    opt("theta_ranking"): Maybe({opt("_agreement_vs_labels"): Each(Each(Maybe(NUMBER))),
                                 REST: Each({"phones": Maybe(NUMBER), "speakers": Maybe(NUMBER), "agreement": NUMBER})}),
    opt("curves"): Maybe(Each(Each(Each(NUMBER), int_keys=True))),
    TIMINGS_REMOVED: STRING,
}


def latent_study(d: Any, source: Any) -> dict:
    check(d, LATENT_STUDY, source)
    arms = d["arms"]
    need(arms, "BEST-RQ", source, "arms", "every arm's base")
    for key in ("best_arm", "paper_arm"):  # None: the study ran without that arm (`bench latent --arms`)
        if d[key] is not None:
            need(arms, d[key], source, "arms", f"named by {key}")
    for seed, per in ((d.get("convergence") or {}).get("per_seed") or {}).items():
        if not per["points"]:
            raise invalid(source, f"convergence.per_seed.{seed}.points", "expected at least one probed step")
    rank = {k: v for k, v in (d.get("theta_ranking") or {}).items() if not k.startswith("_")}
    if rank:  # the report compares the best layer with Mel, seed by seed, and at the reference
        mel = need(rank, "Mel", source, "theta_ranking", "the Mel source every layer is compared with")
        layers = [n for n in rank if n.startswith("layer ")]
        if not layers:
            raise invalid(source, "theta_ranking", "no 'layer N' source")
        for name in ["Mel", *layers]:
            for key in mel:
                if key == "reference":
                    continue
                cell = need(rank[name], key, source, f"theta_ranking.{name}", "a seed of Mel's")
                if cell["phones"] is None:
                    raise invalid(source, f"theta_ranking.{name}.{key}.phones", "expected a number, got null")
        if "reference" in mel:
            if mel["reference"]["phones"] is None:
                raise invalid(source, "theta_ranking.Mel.reference.phones", "expected a number, got null")
            if not any((rank[n].get("reference") or {}).get("phones") is not None for n in layers):
                raise invalid(source, "theta_ranking", "Mel has a reference but no layer has one")
    return d


# --- docs/rpq_tables_mel.json, docs/ml_tables.json: `speechrq asr tables` (their pages, the report, the README)

# a difference with its interval (speechrq.studies.significance): no interval with one seed; tables written before
# issue 35 hold bootstrap intervals without p, se or df
DIFF_CI = {"difference": NUMBER, "ci": Maybe(CI), opt("p"): Maybe(NUMBER), opt("se"): Maybe(NUMBER), opt("df"): Maybe(NUMBER),
           opt("seeds"): ListOf(INT, 2), opt("paired"): BOOL, opt("utterances"): INT, opt("level"): NUMBER}
FAMILY = {opt("p_holm"): Maybe(NUMBER), opt("family"): {"name": STRING, "size": INT, "rule": STRING}}
DIFFERENCE = {"against": STRING, "cer": DIFF_CI, "verdict": STRING, opt("wer"): DIFF_CI,
              opt("by_language"): Each({"cer": DIFF_CI, "verdict": STRING, opt("wer"): DIFF_CI} | FAMILY)} | FAMILY
TABLE_ROW = {"name": STRING, "input": STRING, "kind": STRING, "k": INT, "M": INT, "alpha": Maybe(NUMBER), "cer": NUMBER,
             "cer_std": NUMBER, "wer": NUMBER, "wer_std": NUMBER, opt("cer_by_language"): Each({"cer": NUMBER, "cer_std": NUMBER}),
             opt("cer_language_mean"): NUMBER, opt("cer_language_mean_std"): NUMBER}
RPQ_TABLES = {
    "training_seeds": ListOf(INT), "test_split": STRING, "alpha": Maybe(NUMBER), "baselines": ListOf(STRING),
    "table1": ListOf(TABLE_ROW | {opt("against_smallest_k"): DIFFERENCE}),
    "table2": ListOf(TABLE_ROW | {"differences": ListOf(DIFFERENCE), opt("against_smallest_M"): DIFFERENCE}),
    "table3": ListOf(TABLE_ROW | {"differences": ListOf(DIFFERENCE), "bits_per_second": NUMBER}),
    "table4": ListOf(TABLE_ROW | {opt("best"): BOOL, opt("against_best"): DIFFERENCE}),
    "table7": ListOf({"name": STRING, "M": INT, "warmup_steps": INT, "peak_step": INT, "steps_per_epoch": INT, "peak_epoch": NUMBER,
                      "cer": NUMBER, "cer_std": NUMBER}),
    opt("figure6"): ListOf({"name": STRING, "s_per_step": NUMBER, "epoch_s": NUMBER, "jobs": INT}),
    TIMINGS_REMOVED: STRING,
}


def rpq_tables(d: Any, source: Any) -> dict:
    check(d, RPQ_TABLES, source)
    if not d["training_seeds"]:
        raise invalid(source, "training_seeds", "expected at least one training seed")
    n = len(d["baselines"])
    for table in ("table2", "table3"):
        for i, r in enumerate(d[table]):
            if len(r["differences"]) != n:
                raise invalid(source, f"{table}[{i}].differences", f"expected one per baseline ({n}), got {len(r['differences'])}")
    if d["table4"] and not any(r.get("best") for r in d["table4"]):
        raise invalid(source, "table4", "no row marked best")
    for table in ("table1", "table2"):
        for i, r in enumerate(d[table]):
            if r.get("cer_by_language"):
                for key in ("cer_language_mean", "cer_language_mean_std"):
                    need(r, key, source, f"{table}[{i}]", "a row with cer_by_language")
    return d


# --- `speechrq asr compare`'s compare.json: docs/asr_compare_*.json (pages), DEMO/asr/compare.json (the report)

COMPARE_DIFFERENCE = {"row": STRING, "baseline": STRING, "cer": DIFF_CI, "verdict": STRING} | FAMILY


def _compare_refs(d: dict, source: Any) -> None:
    for i, x in enumerate(d.get("differences") or []):
        for key in ("row", "baseline"):
            need(d["rows"], x[key], source, "rows", f"named by differences[{i}].{key}")


def compare_claims(d: Any, source: Any) -> dict:
    """What ``speechrq report`` reads of a comparison."""
    check(d, {"rows": Each({"cer": NUMBER}), opt("training_seeds"): ListOf(INT),
              opt("differences"): ListOf(COMPARE_DIFFERENCE | {"cer": DIFF_CI | {"utterances": INT}, opt("wer"): DIFF_CI,
                                                               opt("by_language"): OBJECT})}, source)
    _compare_refs(d, source)
    return d


COMPARE_PAGE = {
    "test_split": STRING, "mode": STRING, "beam": INT, "ctc_weight": NUMBER, opt("training_seeds"): ListOf(INT),
    "rows": Each({"cer": NUMBER, "wer": NUMBER, opt("cer_std"): NUMBER, opt("wer_std"): NUMBER, opt("epoch_s"): NUMBER,
                  "bits_per_second": NUMBER, opt("jobs"): INT, opt("cer_by_language"): Each({"cer": NUMBER, "cer_std": NUMBER}),
                  opt("cer_language_mean"): NUMBER, opt("cer_language_mean_std"): NUMBER}),
    opt("differences"): ListOf(COMPARE_DIFFERENCE | {"wer": DIFF_CI, opt("by_language"): Each({"cer": DIFF_CI, opt("wer"): DIFF_CI,
                                                                                            opt("verdict"): STRING} | FAMILY)}),
    TIMINGS_REMOVED: STRING,
}


def compare_page(d: Any, source: Any) -> dict:
    """What :func:`speechrq.studies.discrete_asr.format_compare` reads."""
    check(d, COMPARE_PAGE, source)
    if d.get("training_seeds") == []:
        raise invalid(source, "training_seeds", "expected at least one training seed")
    spread = len(d.get("training_seeds", [0])) > 1
    for name, r in d["rows"].items():
        keys = ["cer_std", "wer_std"] if spread else []
        if r.get("cer_by_language"):
            keys += ["cer_language_mean"] + (["cer_language_mean_std"] if spread else [])
        for key in keys:
            need(r, key, source, f"rows.{name}", "read with several training seeds" if "std" in key else "a row with cer_by_language")
    _compare_refs(d, source)
    return d


SEED_RUN = {"cer": NUMBER, "wer": NUMBER, opt("cer_dev"): NUMBER, opt("wer_dev"): NUMBER, opt("quantizer_seed"): INT,
            opt("train_seed"): INT, opt("s_per_step"): NUMBER, opt("steps_per_epoch"): INT, opt("epoch_s"): NUMBER, "bits_per_second": NUMBER, "steps": INT,
            "utterances": INT, "jobs": INT, "decoding": OBJECT, "final_loss": Maybe(NUMBER), opt("cer_by_language"): Each(NUMBER)}


def compare_runs(d: Any, source: Any) -> dict:
    """A comparison's compare.json as ``asr compare`` reads it back to resume (each finished run's numbers)."""
    check(d, {"rows": Each({opt("quantizer"): OBJECT, opt("unit_bpe"): INT, opt("seeds"): Each(SEED_RUN, int_keys=True)})}, source)
    for name, r in d["rows"].items():
        _same_languages(r.get("seeds") or {}, source, f"rows.{name}.seeds")
        _timed_alone(r.get("seeds") or {}, source, f"rows.{name}.seeds")
    return d


def _timed_alone(seeds: dict, source: Any, path: str) -> None:
    """A run trained alone (``jobs`` 1) carries its time per step and epoch; one trained beside others has none
    reported; ``jobs`` is at least 1."""
    for s, run in seeds.items():
        if run.get("jobs", 1) < 1:
            raise invalid(source, f"{path}.{s}.jobs", f"expected at least 1 (trainings at a time), got {run['jobs']}")
        if run.get("jobs", 1) == 1:
            need(run, "s_per_step", source, f"{path}.{s}", "a run trained alone, jobs 1")


def compare_for_tables(d: Any, source: Any) -> dict:
    """A finished comparison as ``asr tables`` reads it (its rows, each training seed's numbers)."""
    check(d, {"training_seeds": ListOf(INT), "test_split": STRING, "rows": Each({
        "input": STRING, "quantizer": {"kind": STRING, "k": INT, "num_subspaces": INT, opt("alpha"): Maybe(NUMBER)},
        opt("unit_bpe"): INT, "seeds": Each({"cer": NUMBER, "wer": NUMBER, "cer_dev": NUMBER, "bits_per_second": NUMBER, opt("s_per_step"): NUMBER,
                                             opt("jobs"): INT, opt("cer_by_language"): Each(NUMBER)}, int_keys=True)})}, source)
    for name, r in d["rows"].items():
        _same_languages(r["seeds"], source, f"rows.{name}.seeds")
        _timed_alone(r["seeds"], source, f"rows.{name}.seeds")
    return d


def _same_languages(seeds: dict, source: Any, path: str) -> None:
    """Every seed of a row scores the same languages (their means are taken language by language)."""
    langs = [(s, sorted(r["cer_by_language"])) for s, r in seeds.items() if r.get("cer_by_language")]
    for s, ls in langs[1:]:
        if ls != langs[0][1]:
            raise invalid(source, f"{path}.{s}.cer_by_language", f"languages {ls}, seed {langs[0][0]} has {langs[0][1]}")


def run_errors(d: Any, source: Any) -> dict:
    """A run's ``errors_SPLIT.json``: each test utterance's errors and lengths (the bootstrap's input)."""
    check(d, {"ids": ListOf(STRING), "char_errors": ListOf(NUMBER), "chars": ListOf(NUMBER), "word_errors": ListOf(NUMBER),
              "words": ListOf(NUMBER), opt("languages"): Maybe(ListOf(Maybe(STRING)))}, source)
    for key in ("char_errors", "chars", "word_errors", "words", "languages"):
        if d.get(key) is not None and len(d[key]) != len(d["ids"]):
            raise invalid(source, key, f"expected one per utterance ({len(d['ids'])} ids), got {len(d[key])}")
    return d


# --- `speechrq units report`'s report.json: docs/units_report_tiny_bestrq.json, a report resumed in its folder

UNITS_ROW = {"kind": STRING, "M": INT, "alpha": Maybe(NUMBER), "nmse": NUMBER, "used": NUMBER, "entropy_bits": NUMBER,
             "bits_per_second": NUMBER, "compression": NUMBER, opt("phone_purity"): NUMBER, opt("pnmi"): NUMBER,
             opt("ratio_measured"): Maybe(NUMBER), opt("ratio_theory"): NUMBER, opt("ratio_theory_coverage"): Maybe(NUMBER),
             opt("rho_measured"): Maybe(NUMBER), opt("coverage_mean"): NUMBER}


def units_report(d: Any, source: Any) -> dict:
    check(d, {"rows": ListOf(UNITS_ROW), opt("settings"): OBJECT}, source)
    for i, r in enumerate(d["rows"]):
        if r["kind"] == "rpq":
            if r["alpha"] is None:
                raise invalid(source, f"rows[{i}].alpha", "expected a number for an RPQ row, got null")
            for key in ("ratio_measured", "ratio_theory", "ratio_theory_coverage", "rho_measured", "coverage_mean"):
                need(r, key, source, f"rows[{i}]", "an RPQ row")
    return d


# --- README Table II's input kinds: docs/asr_input_kinds_tiny_bestrq.json

INPUT_KINDS = {"note": STRING, "test_split": STRING, "rows": Each({"cer": NUMBER, "wer": NUMBER, "length_change": NUMBER})}


def input_kinds(d: Any, source: Any) -> dict:
    check(d, INPUT_KINDS, source)
    need(d["rows"], "k-means", source, "rows", "every other input is against it")
    return d


# --- `speechrq evaluate`'s results.json: docs/ml_probes.json (page), DEMO/eval/results.json (the report)

PROBE = {"test": NUMBER, "test_std": NUMBER, opt("seed_tests"): Maybe(ListOf(NUMBER)), opt("by_language"): Maybe(Each(NUMBER)),
         opt("metric"): STRING, opt("init_tests"): ListOf(NUMBER)}  # init_tests: a pooled row's score per weight draw
SEPARABILITY = Maybe({"knn_accuracy": NUMBER, "silhouette": NUMBER})
# the rule the baselines were made by (speechrq.evaluate.baselines), said under the table
EVAL_BASELINES = {"feature_stats": {"file": STRING, "sha256": STRING, "source": Maybe(OBJECT), "training_parts": ListOf(STRING),
                                    "frames": INT, "utterances": INT},
                  opt("fbank"): {"statistics": STRING},
                  opt("random-init"): {"preset": STRING, "statistics": STRING, "init_seeds": ListOf(INT), "fingerprints": ListOf(STRING)}}
EVAL_RESULTS = {
    "tasks": ListOf(STRING), "models": Each({"tasks": Each(PROBE), "avg": Maybe(NUMBER)}), opt("baselines"): EVAL_BASELINES,
    opt("finetune"): Maybe({opt("minutes"): NUMBER, opt("steps"): INT}),
    opt("folds"): Maybe(ListOf({"name": STRING, "train": ListOf(STRING), "dev": ListOf(STRING), opt("dev_share"): NUMBER,
                                "test": ListOf(STRING)})),
    opt("target_quality"): Maybe(Each({"phones": SEPARABILITY, "speakers": SEPARABILITY})),
}


def eval_results(d: Any, source: Any) -> dict:
    check(d, EVAL_RESULTS, source)
    for name, m in d["models"].items():
        for task in ("asr", "ft"):
            if task in m["tasks"]:
                need(m["tasks"][task], "metric", source, f"models.{name}.tasks.{task}", "names the table's column")
    draws = ((d.get("baselines") or {}).get("random-init") or {}).get("init_seeds")
    for task, p in ((d["models"].get("random-init") or {}).get("tasks") or {}).items() if draws else ():
        if "init_tests" in p and len(p["init_tests"]) != len(draws):
            raise invalid(source, f"models.random-init.tasks.{task}.init_tests",
                          f"expected one score per init seed of baselines.random-init ({len(draws)}), got {len(p['init_tests'])}")
    folds = d.get("folds") or []
    if len(folds) == 1 and not folds[0]["dev"]:
        need(folds[0], "dev_share", source, "folds[0]", "a fold without dev splits")
    return d


def eval_claims(d: Any, source: Any) -> dict:
    """What ``speechrq report`` reads of the demo's probes."""
    return check(d, {"models": Each({"tasks": Each(PROBE)})}, source)


def probe_cache(d: Any, source: Any) -> dict:
    """One cached probe result of ``speechrq evaluate`` (OUT/probes/...): the settings it was made with and the result."""
    return check(d, {"settings": OBJECT, "result": {"task": STRING, "metric": STRING, "test": NUMBER, "dev": NUMBER, "lr": NUMBER,
                                                    "epoch": INT, "layer_weights": ListOf(NUMBER), opt("sweep"): Each(NUMBER),
                                                    opt("seed_tests"): ListOf(NUMBER), opt("test_std"): NUMBER,
                                                    opt("fold_tests"): Each(NUMBER), opt("by_language"): Each(NUMBER)}}, source)


# --- `speechrq bench quality`'s quality.json, `bench sweep`'s sweep.json, bench_passes.json, demo_phases.json (pages)

QUALITY = {opt("baselines"): EVAL_BASELINES, "tasks": Each({
    "metric": STRING, "baselines": Each({"error": NUMBER, "std": NUMBER}), "stronger_baseline": STRING,
    "curve": ListOf({"step": INT, opt("minutes"): NUMBER, "error": NUMBER, "std": NUMBER, "margin": NUMBER, "beyond_noise": BOOL}),
    "first_beyond_noise": Maybe({"step": INT, opt("minutes"): NUMBER, "margin": NUMBER}),
    "at_demo_step": Maybe({"margin": NUMBER}), opt("demo_step"): INT}),
    TIMINGS_REMOVED: STRING}


def quality(d: Any, source: Any) -> dict:
    check(d, QUALITY, source)
    for task, h in d["tasks"].items():
        if h["at_demo_step"]:
            need(h, "demo_step", source, f"tasks.{task}", "read with at_demo_step")
        if "timings_removed" not in d:  # minutes are absent only where the file says why
            for i, c in enumerate(h["curve"]):
                need(c, "minutes", source, f"tasks.{task}.curve[{i}]", "no timings_removed")
            if h["first_beyond_noise"]:
                need(h["first_beyond_noise"], "minutes", source, f"tasks.{task}.first_beyond_noise", "no timings_removed")
    return d


SWEEP_POINT = {"overrides": ListOf(STRING), opt("max_steps"): INT, opt("minutes"): NUMBER, opt("masked_fraction"): NUMBER,
               opt("acc"): NUMBER, opt("step_time_ratio"): NUMBER}
SWEEP = {"scores": Each({"per": NUMBER, "std": NUMBER}), "points": Each(SWEEP_POINT), "probe_seeds": INT, "budget_steps": INT,
         "config": STRING, opt("set"): Maybe(ListOf(STRING)), opt("baselines"): OBJECT, TIMINGS_REMOVED: STRING}


def sweep(d: Any, source: Any) -> dict:
    check(d, SWEEP, source)
    keys = ("max_steps", "masked_fraction", "acc") + (() if "timings_removed" in d else ("minutes",))  # minutes absent only where said why
    for name, r in d["points"].items():
        if name in d["scores"]:
            for key in keys:
                need(r, key, source, f"points.{name}", "a scored point")
    return d


def sweep_resume(d: Any, source: Any) -> dict:
    """sweep.json as ``bench sweep`` reads it back to add points (each point's overrides and budget)."""
    return check(d, {opt("points"): Each({opt("overrides"): ListOf(STRING), opt("max_steps"): INT})}, source)


BENCH_PASSES = {"corpus": STRING, "split": STRING, "encoder": STRING, "cores": INT, "rows": ListOf({
    "pass": STRING, "processes": INT, "threads": INT, "frames": INT, "seconds": NUMBER, "frames_per_s_per_process": NUMBER,
    "speedup_vs_1x1": NUMBER})}


def bench_passes(d: Any, source: Any) -> dict:
    check(d, BENCH_PASSES, source)
    for i, r in enumerate(d["rows"]):
        check(need(r, f"speedup_vs_1x{d['cores']}", source, f"rows[{i}]", "the column of all the cores"), NUMBER, source,
              f"rows[{i}].speedup_vs_1x{d['cores']}")
    return d


DEMO_PHASES = {"phases": ListOf({"name": STRING, "seconds": NUMBER, "exit": INT}), "total_seconds": NUMBER,
               opt("machine"): Maybe(STRING), opt("install_seconds"): Maybe(NUMBER), opt("second_run_seconds"): Maybe(NUMBER)}


def demo_phases(d: Any, source: Any) -> dict:
    return check(d, DEMO_PHASES, source)


# --- docs/real_speech.json: `speechrq bench real-speech` (its page, the prose numbers)

REAL_CORPUS = {"hours": NUMBER, "utterances": INT, "speakers": INT, "splits": Each({"utterances": INT, "hours": NUMBER, "speakers": INT})}
REAL_SCORE = {"mean": NUMBER, "std": NUMBER, "n": INT, "per_seed": Each(NUMBER, int_keys=True), "std_over": STRING}
REAL_COMPARISON = {"a": STRING, "b": STRING, "vs": Maybe(VS_BASE | FAMILY | {"p": Maybe(NUMBER)}), "sentence": STRING}
REAL_SPEECH = {
    "question": STRING, "preset": STRING, "steps": INT, "seeds": ListOf(INT), "probe_seeds": INT, "seeds_drive": STRING,
    "family_rule": STRING, "fbank_pairing": STRING, "held_out": STRING, "split_rule": STRING, "tasks": ListOf(STRING),
    "task_names": Each(STRING), "metric": STRING, "corpora": Each(REAL_CORPUS), "system_order": ListOf(STRING),
    "comparison_order": ListOf(STRING),
    "scores": Each(Each(REAL_SCORE)), "comparisons": Each(Each(REAL_COMPARISON)),
}


def real_speech(d: Any, source: Any) -> dict:
    check(d, REAL_SPEECH, source)
    for name in ("pretrain", "synth", *d["tasks"]):
        need(d["corpora"], name, source, "corpora", "named on the page")
    for task in d["tasks"]:
        need(d["task_names"], task, source, "task_names", "a task's name")
        scores = need(d["scores"], task, source, "scores", "a task's table")
        for key, c in need(d["comparisons"], task, source, "comparisons", "a task's comparisons").items():
            for side in ("a", "b"):
                need(scores, c[side], source, f"comparisons.{task}.{key}.{side}", "a compared system")
    return d


# --- `targets rank`'s ranking, as `bench latent` keeps it (OUT/seed{s}/rank_theta.json)

SEPARATION = Maybe({"knn_accuracy": NUMBER})
RANKING = {"sources": Each({"phones": SEPARATION, "speakers": SEPARATION, "agreement": NUMBER}),
           "agreement_vs_labels": Each(Maybe(NUMBER))}


def ranking(d: Any, source: Any) -> dict:
    return check(d, RANKING, source)


# --- one pre-training seed's share of `bench latent` (OUT/seed{s}/seed.json): its runs, probe scores, Figure 3 points
# and θ's ranking, all the study's table needs once the seed's checkpoints are gone

LATENT_SEED = {"made_by": OBJECT, "runs": Each(STRING), "histories": Each(ANY), "scores": Each(Each(NUMBER)),
               "curves": Each(Each(Each(NUMBER), int_keys=True)), "theta_ranking": RANKING}


def latent_seed(d: Any, source: Any) -> dict:
    check(d, LATENT_SEED, source)
    for name in d["scores"]:
        need(d["runs"], name, source, "runs", f"the run scored as scores.{name}")
    return d


__all__ = ["ANY", "bench_passes", "compare_claims", "compare_for_tables", "compare_page", "compare_runs", "demo_phases",
           "eval_claims", "eval_results", "input_kinds", "latent_seed", "latent_study", "missing", "probe_cache", "quality", "ranking",
           "real_speech", "rpq_tables", "run_errors", "sweep", "sweep_resume", "units_report"]

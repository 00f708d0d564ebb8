"""The evidence behind a table: each run's per-utterance errors, shipped beside the table's JSON, and the recheck
that recomputes every number, interval and verdict of the table from them.

``asr compare`` writes ``OUT/compare_errors.json.gz`` and ``asr tables`` writes ``PREFIX_errors.json.gz``: for each
row, each replicate seed's character and word edit counts on every dev and test utterance, with the references'
lengths and languages. :func:`recheck` reads a table's JSON and its archive and returns every disagreement: a row's
CER (mean and standard deviation over seeds, dev and test), a difference's value, interval and p, and its verdict after
the family rule (:mod:`speechrq.studies.significance`). ``tests/test_evidence.py`` runs it on every shipped table.
"""

from __future__ import annotations

import gzip
import json
import math
import statistics
from pathlib import Path

import numpy as np

from ..errors import SpeechrqError
from .asr_runs import _errors, _slug, family

FORMAT = "speechrq-errors/1"
SUFFIX = "_errors.json.gz"


def row_errors(out: Path, spec: dict, seeds: list[int], splits: list[str]) -> dict:
    """One row's per-utterance errors on ``splits``: ``{split: {"ids", "chars", "words", "languages", "char_errors"
    [seeds][U], "word_errors" [seeds][U]}}`` read from its runs' ``errors_SPLIT.json``."""
    found = {}
    for split in dict.fromkeys(splits):
        ce, cl, we, wl, ids, langs = _errors(out, spec, seeds, split)
        found[split] = {"ids": ids, "chars": cl.tolist(), "words": wl.tolist(), "languages": langs,
                        "char_errors": ce.tolist(), "word_errors": we.tolist()}
    return found


def write_archive(path: str | Path, rows: dict, seeds: list[int], test_split: str) -> Path:
    """``rows``: ``{name: {"comparison", "quantizer", "input", "splits": row_errors(...)}}``, gzipped JSON at ``path``
    (atomic; byte-reproducible: no timestamp in the gzip header)."""
    from ..io import atomic_path

    path = Path(path)
    data = json.dumps({"format": FORMAT, "seeds": seeds, "test_split": test_split, "rows": rows}, sort_keys=True).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as z:
        z.write(data)
    return path


def read_archive(path: str | Path) -> dict:
    """An archive written by :func:`write_archive`, or one line saying why it cannot be read."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SpeechrqError(f"{path}: missing (the per-utterance errors behind the table)") from None
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpeechrqError(f"{path}: not a gzipped JSON archive of per-utterance errors ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), dict):
        raise SpeechrqError(f"{path}: not a {FORMAT} archive")
    from ..schema import INT, NUMBER, OBJECT, STRING, Each, ListOf, Maybe, check, invalid

    split = {"ids": ListOf(STRING), "chars": ListOf(NUMBER), "words": ListOf(NUMBER), "languages": ListOf(Maybe(STRING)),
             "char_errors": ListOf(ListOf(NUMBER)), "word_errors": ListOf(ListOf(NUMBER))}
    check(data, {"seeds": ListOf(INT), "test_split": STRING, "rows": Each({"comparison": STRING, "quantizer": OBJECT, "input": STRING,
                                                                         "splits": Each(split)})}, path)
    for name, row in data["rows"].items():  # every list one per utterance, every seed's errors on every utterance
        for key, s in row["splits"].items():
            u = len(s["ids"])
            for field in ("chars", "words", "languages"):
                if len(s[field]) != u:
                    raise invalid(path, f"rows.{name}.splits.{key}.{field}", f"expected one per utterance ({u}), got {len(s[field])}")
            for field in ("char_errors", "word_errors"):
                if len(s[field]) != len(data["seeds"]) or any(len(x) != u for x in s[field]):
                    raise invalid(path, f"rows.{name}.splits.{key}.{field}", f"expected [{len(data['seeds'])} seeds][{u} utterances]")
        if data["test_split"] not in row["splits"]:
            raise invalid(path, f"rows.{name}.splits", f"no {data['test_split']!r} split")
    return data


def archive_path(table_json: str | Path) -> Path:
    """``docs/rpq_tables_mel.json`` -> ``docs/rpq_tables_mel_errors.json.gz``; a comparison's ``compare.json`` ->
    ``compare_errors.json.gz`` beside it."""
    p = Path(table_json)
    return p.with_name(p.stem + SUFFIX)


def _arrays(split: dict, language: str | None = None) -> tuple:
    keep = [k for k, g in enumerate(split["languages"]) if language is None or g == language]
    ce, we = np.asarray(split["char_errors"], dtype=np.float64), np.asarray(split["word_errors"], dtype=np.float64)
    return (ce[:, keep], np.asarray(split["chars"], dtype=np.float64)[keep], we[:, keep],
            np.asarray(split["words"], dtype=np.float64)[keep], [split["ids"][k] for k in keep])


def _rates(split: dict) -> tuple[float, float]:
    ce, cl = _arrays(split)[:2]
    per_seed = 100.0 * ce.sum(1) / cl.sum()
    return float(per_seed.mean()), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0


def _close(a, b, tol: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def _shares_draw(archive: dict, a: str, b: str) -> bool:
    ra, rb = archive["rows"][a], archive["rows"][b]
    return ra["comparison"] == rb["comparison"] and _slug(ra["quantizer"]) == _slug(rb["quantizer"])


def recheck_differences(entries: list[tuple[str, dict]], archive: dict, test_split: str) -> list[str]:
    """Recompute each ``(where, difference)`` (keys ``row`` and ``against`` or ``baseline``) from ``archive``, then Holm
    within each family the entries name; returns the disagreements, one line each."""
    from .significance import difference_interval

    problems, by_family = [], {}
    for where, d in entries:
        a, b = d.get("against", d.get("baseline")), d["row"]
        if a not in archive["rows"] or b not in archive["rows"]:
            problems.append(f"{where}: {b!r} against {a!r}: not in the archive")
            continue
        pair = _shares_draw(archive, a, b)
        sa, sb = archive["rows"][a]["splits"][test_split], archive["rows"][b]["splits"][test_split]
        if sa["ids"] != sb["ids"]:  # a paired comparison needs the same utterances in the same order
            problems.append(f"{where}: {b!r} against {a!r}: the archive's rows hold other {test_split} utterances or another order")
            continue
        redo = {"cer": difference_interval(_arrays(sa)[0], _arrays(sb)[0], _arrays(sa)[1], pair)}
        if d.get("by_language"):
            redo["by_language"] = {lang: {"cer": difference_interval(_arrays(sa, lang)[0], _arrays(sb, lang)[0], _arrays(sa, lang)[1], pair)}
                                   for lang in d["by_language"]}
        for key in ("difference", "ci", "p"):
            if not _close(d["cer"].get(key), redo["cer"][key]):
                problems.append(f"{where}: {b!r} against {a!r}: cer.{key} {d['cer'].get(key)} but the errors give {redo['cer'][key]}")
        by_family.setdefault((d.get("family") or {}).get("name"), []).append((where, d, redo))
    for name, group in by_family.items():
        family([redo for _, _, redo in group], name or "")
        for where, d, redo in group:
            if d.get("verdict") != redo["verdict"] or not _close(d.get("p_holm"), redo["p_holm"]):
                problems.append(f"{where}: {d['row']!r}: verdict {d.get('verdict')!r} (Holm p {d.get('p_holm')}) but the errors "
                                f"give {redo['verdict']!r} (Holm p {redo['p_holm']})")
            for lang, r in (redo.get("by_language") or {}).items():
                if d["by_language"][lang].get("verdict") != r.get("verdict"):
                    problems.append(f"{where}: {d['row']!r} ({lang}): verdict {d['by_language'][lang].get('verdict')!r} "
                                    f"but the errors give {r.get('verdict')!r}")
    return problems


def recheck_rows(rows: list[tuple[str, str, dict]], archive: dict, test_split: str) -> list[str]:
    """Each ``(where, name, row)``'s CER mean and standard deviation over seeds (and dev CER when the row has one)."""
    problems = []
    for where, name, r in rows:
        if name not in archive["rows"]:
            problems.append(f"{where}: {name!r}: not in the archive")
            continue
        splits = archive["rows"][name]["splits"]
        mean, std = _rates(splits[test_split])
        if not (_close(r["cer"], mean, 1e-4) and _close(r.get("cer_std", std), std, 1e-4)):
            problems.append(f"{where}: {name!r}: CER {r['cer']} ± {r.get('cer_std')} but the errors give {mean} ± {std}")
        if "cer_dev" in r and not _close(r["cer_dev"], _rates(splits["dev"])[0], 1e-4):
            problems.append(f"{where}: {name!r}: dev CER {r['cer_dev']} but the errors give {_rates(splits['dev'])[0]}")
    return problems


def recheck_tables(tables: dict, archive: dict) -> list[str]:
    """Every row, difference and verdict of an ``asr tables`` JSON (Tables I-IV) against its archive; Table IV's best
    α must be the lowest dev CER."""
    split = tables["test_split"]
    rows = [(f"{t}[{i}]", r["name"], r) for t in ("table1", "table2", "table3", "table4") for i, r in enumerate(tables[t])]
    entries = []
    for t in ("table1", "table2", "table3", "table4"):
        for i, r in enumerate(tables[t]):
            for key in ("against_smallest_k", "against_smallest_M", "against_best"):
                if key in r:
                    entries.append((f"{t}[{i}].{key}", r[key]))
            entries += [(f"{t}[{i}].differences[{j}]", d) for j, d in enumerate(r.get("differences", []))]
    problems = recheck_rows(rows, archive, split) + recheck_differences(entries, archive, split)
    if tables["table4"] and all("cer_dev" in r for r in tables["table4"]):
        best = min(tables["table4"], key=lambda r: r["cer_dev"])
        if not best.get("best"):
            problems.append(f"table4: the best α is {best['alpha']} by dev CER, the table marks another")
    elif tables["table4"]:
        problems.append("table4: no dev CER, so its best α was not chosen on dev")
    return problems


def recheck_compare(report: dict, archive: dict) -> list[str]:
    """Every row and difference of an ``asr compare`` JSON against its archive."""
    split = report["test_split"]
    rows = [(f"rows.{name}", name, r) for name, r in report["rows"].items()]
    entries = [(f"differences[{i}]", d) for i, d in enumerate(report.get("differences") or [])]
    return recheck_rows(rows, archive, split) + recheck_differences(entries, archive, split)


def recheck_latent(study: dict) -> list[str]:
    """Every ``vs_base`` interval and verdict of a Latent-RQ study from its per-seed numbers (paired t over
    pre-training seeds, Holm within each family)."""
    from .latent_study import LOWER_IS_BETTER, family, paired

    problems, groups = [], {}
    for arm, row in study["arms"].items():
        base = study["base"][arm] if "base" in study else "BEST-RQ"
        for task, cell in row.items():
            if not cell or not cell.get("vs_base"):
                continue
            redo = paired({int(k): v for k, v in cell["per_seed"].items()},
                          {int(k): v for k, v in study["arms"][base][task]["per_seed"].items()}, task in LOWER_IS_BETTER)
            where = f"arms.{arm}.{task}.vs_base"
            for key in ("mean", "ci95"):
                if not _close(cell["vs_base"][key], redo[key]):
                    problems.append(f"{where}: {key} {cell['vs_base'][key]} but the per-seed numbers give {redo[key]}")
            groups.setdefault((cell["vs_base"].get("family") or {}).get("name"), []).append((where, cell["vs_base"], redo))
    for name, group in groups.items():
        family([redo for _, _, redo in group], name or "")
        problems += [f"{where}: verdict {v['verdict']!r} but the per-seed numbers give {redo['verdict']!r}"
                     for where, v, redo in group if v["verdict"] != redo["verdict"]]
    for seed_cells in [study["arms"][a] for a in study["arms"]]:
        for task, cell in seed_cells.items():
            if cell and not (_close(cell["mean"], statistics.fmean(cell["per_seed"].values()))):
                problems.append(f"{task}: mean {cell['mean']} is not the mean of its per-seed numbers")
    return problems

"""The config reference (speechrq.config_reference) against the config dataclasses it is made from."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import speechrq
from speechrq.config import config_to_dict
from speechrq.config_reference import (CONFIGS, class_doc, config_classes, config_fields, field_docs, format_config_reference,
                                       markdown, sections, type_text)

PAGE = format_config_reference()


def page_rows(page: str) -> dict[str, dict[str, tuple[str, str, str]]]:
    """``{config name: {key: (type, default, meaning)}}`` of every table row of the page, by its ``## name:`` part."""
    rows: dict[str, dict[str, tuple[str, str, str]]] = {}
    name = None
    for line in page.splitlines():
        if line.startswith("## "):
            name = line[3:].split(":")[0]
            rows[name] = {}
        elif line.startswith("| `"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 4, line
            key = cells[0].strip("`")
            assert key not in rows[name], f"{name}: {key} has two rows"
            rows[name][key] = (cells[1], cells[2], cells[3])
    return rows


ROWS = page_rows(PAGE)


def leaf_fields(root: type):
    """``(dotted key, field, type)`` of every field of ``root``'s tree that is not a section."""
    for key, cls in sections(root):
        for f, tp in config_fields(cls):
            if not dataclasses.is_dataclass(tp):
                yield (f"{key}.{f.name}" if key else f.name), f, tp


def test_field_docs_reads_the_string_after_each_field():
    @dataclass
    class Toy:
        """A toy section."""

        a: int = 1
        """A's meaning,
        on two lines."""
        b: str = "x"  # a comment is no documentation
        c: list[int] = field(default_factory=list)
        """C."""

    assert field_docs(Toy) == {"a": "A's meaning,\non two lines.", "c": "C."}
    assert class_doc(Toy) == "A toy section."

    @dataclass
    class Bare:
        x: int = 0

    assert class_doc(Bare) == "" and field_docs(Bare) == {}  # not the signature dataclasses writes as __doc__


def test_every_config_load_config_builds_is_in_the_reference():
    """Each dataclass the package hands to ``load_config`` / ``config_from_dict`` is a root of CONFIGS."""
    built = set()
    for path in Path(speechrq.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("load_config", "config_from_dict")
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id[0].isupper()):  # not a parameter
                built.add(node.args[0].id)
    assert built, "no call of load_config found"
    assert built <= {root.__name__ for _, root, _ in CONFIGS}, f"configs missing from the reference: {built - {r.__name__ for _, r, _ in CONFIGS}}"


def test_every_config_class_and_field_says_what_it_means():
    missing = [cls.__name__ for cls in config_classes() if not class_doc(cls).strip()]
    missing += [f"{cls.__name__}.{f.name}" for cls in config_classes() for f, _ in config_fields(cls)
                if not field_docs(cls).get(f.name, "").strip()]
    assert not missing, f"config classes and fields without a docstring: {', '.join(missing)}"
    names = {cls.__name__ for cls in config_classes()}
    assert {"PretrainConfig", "DataConfig", "ModelConfig", "QuantizerConfig", "MaskingConfig", "TargetsConfig", "OptimConfig",
            "TrainConfig", "ASRConfig", "ASRDataConfig", "ASRModelSection", "ASRLossConfig", "DecodeConfig"} <= names


@pytest.mark.parametrize("name, root", [(n, r) for n, r, _ in CONFIGS], ids=[n for n, _, _ in CONFIGS])
def test_every_field_has_a_row_with_its_type_default_and_meaning(name, root):
    defaults = config_to_dict(root())  # every default, as a config file holds it
    rows = ROWS[name]
    for key, f, tp in leaf_fields(root):
        assert key in rows, f"{name}: no row for {key}"
        type_cell, default_cell, meaning = rows[key]
        value = defaults
        for part in key.split("."):
            value = value[part]
        assert default_cell == f"`{json.dumps(value, ensure_ascii=False)}`", f"{name}: {key}"
        assert type_cell == type_text(tp), f"{name}: {key}"
        assert meaning and meaning == " ".join(markdown(field_docs(f_owner(root, key))[f.name]).split()), f"{name}: {key}"
    for key, cls in sections(root)[1:]:  # each section has its heading
        assert f"### `{key}` ({cls.__name__})" in PAGE


def f_owner(root: type, key: str) -> type:
    """The dataclass that defines the field ``key`` (dotted) of ``root``'s tree."""
    return dict(sections(root))[key.rpartition(".")[0]]


def test_no_row_names_a_field_that_does_not_exist():
    assert set(ROWS) == {name for name, _, _ in CONFIGS}
    for name, root, _ in CONFIGS:
        known = {key for key, _, _ in leaf_fields(root)}
        assert set(ROWS[name]) <= known, f"{name}: rows for no field: {sorted(set(ROWS[name]) - known)}"
        assert len(ROWS[name]) == len(known)


def test_types_and_defaults_read_as_in_a_config_file():
    p, a = ROWS["pretrain"], ROWS["asr"]
    assert p["data.split"][:2] == ("string or list of strings", '`"train"`')
    assert p["data.max_duration"][:2] == ("number", "`60.0`")
    assert p["targets.layers"][:2] == ("list of integers, `auto` or null", "`null`")
    assert p["targets.refresh_at"][:2] == ("list of integers", "`[]`")
    assert p["optim.betas"][:2] == ("list of 2 numbers", "`[0.9, 0.98]`")
    assert p["train.device"][:2] == ("one of `auto`, `cpu`, `cuda`", '`"auto"`')
    assert p["targets.standardize"][:2] == ("boolean", "`true`")
    assert a["data.units"][:2] == ("string", '`""`') and "Required" in a["data.units"][2]
    assert "``" not in PAGE and ":mod:" not in PAGE  # reStructuredText markup is made Markdown


RANGES = [  # (config, key, values the config accepts, values it refuses, the range as the meaning states it)
    ("pretrain", "data.max_duration", [30.0], [0, -1], "> 0"),
    ("pretrain", "data.num_buckets", [1], [0], ">= 1"),
    ("pretrain", "data.num_workers", [0], [-1], ">= 0"),
    ("pretrain", "model.dropout", [0, 0.9, None], [1, -0.1], "In [0, 1) or null"),
    ("pretrain", "quantizer.codebook_dim", [1], [0], ">= 1"),
    ("pretrain", "masking.prob", [0.01, 1], [0, 1.5], "In (0, 1]"),
    ("pretrain", "masking.span", [1], [0], ">= 1"),
    ("pretrain", "targets.stats_utterances", [1], [0], ">= 1"),
    ("pretrain", "targets.cache_max_gb", [0.1], [0], "> 0"),
    ("pretrain", "optim.lr", [1e-6], [0], "> 0"),
    ("pretrain", "optim.warmup_steps", [0, 10000], [-1, 10001], "In [0, `max_steps`]"),
    ("pretrain", "optim.max_steps", [1000], [0], ">= 1"),
    ("pretrain", "optim.final_lr_ratio", [0, 1], [-0.1, 1.1], "In [0, 1]"),
    ("pretrain", "optim.clip_norm", [0.1, None], [0], "> 0 or null"),
    ("pretrain", "optim.accum_steps", [1], [0], ">= 1"),
    ("pretrain", "train.log_every", [1], [0], ">= 1"),
    ("pretrain", "train.keep_last", [1], [0], ">= 1"),
    ("pretrain", "train.max_nonfinite", [1], [0], ">= 1"),
    ("asr", "data.max_duration", [1.0], [0], "> 0"),
    ("asr", "data.vocab_size", [0, 32], [-1], ">= 0"),
    ("asr", "loss.ctc_weight", [0, 1], [-0.1, 1.01], "In [0, 1]"),
    ("asr", "loss.label_smoothing", [0], [1], "In [0, 1)"),
    ("asr", "decode.beam", [1], [0], ">= 1"),
    ("asr", "decode.ctc_weight", [0, 1], [1.5], "In [0, 1]"),
]
REQUIRED = {"pretrain": {"out_dir": "run", "data": {"corpus": "corpus"}}, "asr": {"data": {"units": "units"}}}


@pytest.mark.parametrize("name, key, good, bad, said", RANGES, ids=[f"{n}:{k}" for n, k, *_ in RANGES])
def test_each_stated_range_is_the_one_validation_enforces(name, key, good, bad, said):
    from speechrq.config import ConfigError, config_from_dict

    root = next(r for n, r, _ in CONFIGS if n == name)
    assert said in ROWS[name][key][2], f"{name}: {key}: the meaning does not state {said!r}"
    for v in good:
        config_from_dict(root, REQUIRED[name], overrides=[f"{key}={json.dumps(v)}"])
    for v in bad:
        with pytest.raises(ConfigError):
            config_from_dict(root, REQUIRED[name], overrides=[f"{key}={json.dumps(v)}"])


def test_meanings_give_units():
    p, a = ROWS["pretrain"], ROWS["asr"]
    assert "Seconds" in p["data.max_duration"][2] and "Seconds" in p["data.max_utterance_duration"][2]
    assert "40 ms encoder frames" in p["masking.span"][2] and "GiB" in p["targets.cache_max_gb"][2]
    assert "Optimizer steps" in p["optim.warmup_steps"][2] and "Optimizer steps" in p["train.checkpoint_every"][2]
    assert "Seconds" in a["data.max_duration"][2] and "input frames" in a["loss.time_mask_width"][2]

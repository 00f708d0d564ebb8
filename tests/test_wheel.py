"""The package outside the clone: its wheel, installed into a fresh environment, runs the README's quickstart from an
empty directory.

The wheel is built from a copy of the sources (so nothing stale in ``build/`` rides along) and installed with
``--no-deps --no-index`` into a new virtual environment; the dependencies already installed here are reused through a
``.pth`` line (no network, and pip never touches torch). The quickstart's commands are read from README.md and shrunk
to a few steps (each shrink must find its text, so a README change that moves a command fails here, by name).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import speechrq

ROOT = Path(__file__).resolve().parents[1]

# (what the README says, what the test runs instead): a few steps of each job, the commands otherwise as written
SHRINK = [
    ("--hours 1.0", "--hours 0.08 --speakers 8"),
    ("--init-from exp/demo/stage0/checkpoints/step_00000500", "--init-from exp/demo/stage0/checkpoints/step_00000002"),
    ("--encoder exp/demo/stage0/checkpoints/step_00001000", "--encoder exp/demo/stage0/checkpoints/step_00000004"),
    ("--frames 60000", "--frames 3000"),
    ("--k 500", "--k 16"),
    ("--set optim.max_steps=600", "--set optim.max_steps=4 --set optim.warmup_steps=2"),
]
# appended to the commands of these subcommands
EXTRA = {
    ("pretrain",): "--set optim.max_steps=4 --set optim.warmup_steps=2 --set train.checkpoint_every=2",
    ("evaluate",): "--epochs 1 --probe-seeds 1 --no-target-analysis",
}


def quickstart() -> list[list[str]]:
    """The README's first Quickstart block: one argv per command (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Quickstart\n.*?^```sh\n(.*?)^```", text, re.S | re.M)
    assert block, "README.md: no ```sh block under ## Quickstart"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def shrunk(commands: list[list[str]]) -> list[str]:
    text = [" ".join(shlex.quote(a) for a in argv) for argv in commands]
    for old, new in SHRINK:
        hits = [i for i, t in enumerate(text) if old in t]
        assert hits, f"README.md's quickstart no longer says {old!r} (tests/test_wheel.py shrinks it to {new!r})"
        text = [t.replace(old, new) for t in text]
    for i, t in enumerate(text):
        for words, extra in EXTRA.items():
            if shlex.split(t)[1:1 + len(words)] == list(words):
                text[i] = f"{t} {extra}"
    return text


def test_the_quickstart_is_read_from_the_readme():
    commands = quickstart()
    assert all(argv[0] == "speechrq" for argv in commands)
    assert [argv[1] for argv in commands] == ["synth", "features", "pretrain", "pretrain", "evaluate", "units", "units",
                                              "asr", "asr"]
    # it names shipped configs, not files of a clone
    assert not any("configs/" in a or "assets/" in a for argv in commands for a in argv)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("speechrq-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_carries_the_configs_and_the_reference(wheel):
    from speechrq.resources import CONFIG_KINDS, config_names

    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in CONFIG_KINDS:
        for name in config_names(kind):
            assert f"speechrq/configs/{kind}/{name}.yaml" in names
    for f in ("model.safetensors", "meta.json"):
        assert f"speechrq/assets/reference/tiny_bestrq/checkpoints/step_00004000/{f}" in names
    assert wheel.name.startswith(f"speechrq-{speechrq.__version__}-")
    assert not any(n.startswith(("tests/", "speechrq/__pycache__")) for n in names)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel; the dependencies installed here are reused, not downloaded."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    # a path line adds the folder, but not its .pth files: the editable install of the clone stays out of sight
    (site / "zz_reuse_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.mark.slow
def test_the_installed_package_is_the_wheel_not_the_clone(installed, tmp_path):
    out = subprocess.run([installed / "bin" / "python", "-c", "import speechrq, speechrq.resources as r; "
                          "print(speechrq.__file__); print(r.reference_checkpoint())"],
                         cwd=tmp_path, env=_env(), check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in out), out
    version = subprocess.run([installed / "bin" / "speechrq", "--version"], cwd=tmp_path, env=_env(), check=True,
                             capture_output=True, text=True).stdout.strip()
    assert version == f"speechrq {speechrq.__version__}"
    listing = subprocess.run([installed / "bin" / "speechrq", "configs", "list"], cwd=tmp_path, env=_env(), check=True,
                             capture_output=True, text=True).stdout
    assert "tiny_latent" in listing and "tiny_bestrq" in listing


@pytest.mark.slow
def test_the_readme_quickstart_runs_from_an_empty_directory(installed, tmp_path):
    """Every command of the README's quickstart, a few steps each, with the installed ``speechrq`` and no clone in
    sight: the shipped configs by name, outputs where the README says."""
    work = tmp_path / "empty"
    work.mkdir()
    for command in shrunk(quickstart()):
        argv = [str(installed / "bin" / "speechrq"), *shlex.split(command)[1:]]
        if argv[1] in ("synth",):
            argv += ["--quiet"]
        run = subprocess.run(argv, cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{command}\n{run.stderr[-3000:]}"
    assert (work / "exp/demo/stage1/checkpoints/step_00000004/model.safetensors").is_file()
    assert (work / "exp/demo/eval/results.json").is_file()
    assert (work / "exp/units/km500/corpus/units_test.txt").is_file()
    decoded = list((work / "exp/asr/km500/decode").glob("*/results.json"))
    assert decoded, "asr decode wrote no results.json"

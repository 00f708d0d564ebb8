"""Issue 34, points 1-3, end to end with the real commands in their own processes: two writers of one folder, every long
command stopped by SIGTERM and by SIGKILL then run again, and a full disk under ``units encode`` and ``asr train``.

The unit tests of the mechanism (``speechrq.lock``, ``speechrq.io``'s temporaries, the termination handler) are in
``tests/test_lock.py``; this file checks what a user sees: exit statuses, stderr, and what the output folders hold.

Every command runs once uninterrupted into ``ref`` (module-scoped: shared by the SIGTERM and SIGKILL cases and by the
later commands, which read it), once into ``SIGTERM``/``SIGKILL`` killed once it has written something, then again into
the same folder to the end. The rerun's folder must hold exactly the reference's paths (hidden ones too) with the same
bytes, read through :func:`snapshot`: ``.gz`` decompressed, the folder's own absolute path written as ``<OUT>``
(manifests, configs and summaries name it), and nothing else changed, except the fields named one by one in
:data:`WALL_CLOCK` and :data:`THIS_CALL`, the lock files of :data:`HOLDERS` (compared by name) and TensorBoard's event
files (named by the clock and the pid: compared as the scalars TensorBoard shows, :func:`tensorboard_scalars`).
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import tiny_pretrain_config

ROOT = Path(__file__).resolve().parent.parent
ENCODER = ROOT / "tests" / "fixtures" / "checkpoint_v0"  # a tiny trained checkpoint: the units' encoder
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
STEPS = 6  # optimizer steps of the pre-training and ASR runs: a checkpoint every 2, the last 2 kept

# Fields that hold wall-clock times, file by file (relative path pattern -> keys, in JSON objects or JSON lines):
# everything else of these files is compared too.
WALL_CLOCK = {
    r"metrics\.jsonl": {"s_per_step", "audio_s_per_s"},  # a log window's measured step times (both trainers)
    r"encode\.json": {"encoder_s", "quantize_s", "frames_per_s"},  # per split: seconds spent encoding, and the rate
}
# Fields that count this call's own work rather than describe the result (a rerun that reuses part of the killed run's
# work does less): ``evaluate``'s encoder passes, 0 when every hidden state was cached (tests/test_evaluate.py).
THIS_CALL = {
    r"results\.json": {"utterances_encoded"},
}
# Files whose content is a process's own (its pid, command line and start time), compared by name only: the lock of an
# output file sits beside it, in the folder compared (the lock of a folder sits beside the folder, outside it).
HOLDERS = {r"\.feature_stats\.json\.lock"}
TENSORBOARD = re.compile(r"^tensorboard/events\.out\.tfevents\.\d+\.[^/]+\.\d+\.\d+$")  # named by the clock, host and pid


# ---------------------------------------------------------------------------------------------------- running commands


def speechrq(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechrq", *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=ROOT)


def ok(*args) -> subprocess.CompletedProcess:
    r = speechrq(*args)
    assert r.returncode == 0, f"speechrq {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr[-3000:]}"
    return r


# ``speechrq ARGS`` stopped at a chosen point: the N-th call of the function WHERE (``numpy.save`` writing an array into
# its temporary, ``os.fsync`` before a temporary is renamed onto its file, ...) runs, touches MARKER and waits PAUSE
# seconds there, so that the signal lands there (mid-write: the temporary is on disk, not yet renamed), then goes on.
RUNNER = """
import importlib, sys, time
marker, where, pause, nth = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
module, _, name = where.rpartition(".")
m = importlib.import_module(module)
f, calls = getattr(m, name), [0]
def announced(*args, **kwargs):
    result = f(*args, **kwargs)
    calls[0] += 1
    if calls[0] == nth:
        open(marker, "a").close()
        time.sleep(pause)
    return result
setattr(m, name, announced)
from speechrq.cli import main
sys.exit(main(sys.argv[5:]))
"""


@dataclass
class Killed:
    returncode: int
    stderr: str
    pid: int


def run_killed(argv: list, sig: int, begun: Callable[[], bool], announce: tuple[str, float, int] | None = None,
               marker: Path | None = None, timeout: float = 600) -> Killed:
    """Start ``speechrq *argv``, send ``sig`` to it (its pid alone, as ``kill`` or the OOM killer would) as soon as
    ``begun()`` (with ``announce``: once the process is there, see RUNNER), and wait for it to end."""
    if announce:
        cmd = [sys.executable, "-c", RUNNER, str(marker), *map(str, announce), *map(str, argv)]
    else:
        cmd = [sys.executable, "-m", "speechrq", *map(str, argv)]
    with open(os.devnull, "w") as null, subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, text=True, env=ENV,
                                                          cwd=ROOT) as proc:
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while not begun():
            if proc.poll() is not None:
                reader.join(10)
                pytest.fail(f"speechrq {' '.join(map(str, argv))} ended (exit {proc.returncode}) before it could be killed "
                            f"mid-run: {''.join(err)[-2000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"speechrq {' '.join(map(str, argv))}: nothing written within {timeout} s")
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        reader.join(30)
        return Killed(proc.returncode, "".join(err), proc.pid)


def lock_is_free(path: Path, grace: float = 1.0) -> bool:
    """Whether no process holds ``path``'s lock (within ``grace`` seconds: children dying with their parent)."""
    from speechrq.lock import lock_file

    lf = lock_file(path)
    if not lf.exists():
        return True
    deadline = time.monotonic() + grace
    fd = os.open(lf, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)


def temporaries(folder: Path) -> list[str]:
    """Every temporary name a writer of speechrq leaves when killed mid-write, under ``folder``."""
    from speechrq.io import temp_owner

    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if temp_owner(p.name) is not None or ".tmp" in p.name)


# ---------------------------------------------------------------------------------------------------- comparing folders


def _drop(obj, keys: set[str]):
    if isinstance(obj, dict):
        return {k: _drop(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_drop(v, keys) for v in obj]
    return obj


def snapshot(folder: Path) -> dict[str, object]:
    """``{relative path: content}`` of everything under ``folder`` (hidden files and empty folders too), as compared."""
    folder = folder.resolve()
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir():
            out[rel + "/"] = None
            continue
        if TENSORBOARD.match(rel):
            continue  # compared as scalars (tensorboard_scalars)
        if any(re.fullmatch(pat, rel) for pat in HOLDERS):
            out[rel] = "a lock"
            continue
        data = p.read_bytes()
        if p.name.endswith(".gz"):
            data = gzip.decompress(data)
        data = data.replace(str(folder).encode(), b"<OUT>")
        keys = set().union(*(k for pat, k in [*WALL_CLOCK.items(), *THIS_CALL.items()] if re.fullmatch(pat, rel)))
        if keys:
            text = data.decode()
            data = ([_drop(json.loads(line), keys) for line in text.splitlines()] if rel.endswith(".jsonl")
                    else _drop(json.loads(text), keys))
        out[rel] = data
    return out


def tensorboard_scalars(folder: Path) -> dict | None:
    """What TensorBoard shows of ``folder/tensorboard``: ``{tag: [(step, value)]}`` (the stale steps a resumed run's
    ``purge_step`` drops already dropped), wall-clock tags left out; None without TensorBoard files."""
    files = [p for p in folder.glob("tensorboard/*") if TENSORBOARD.match(p.relative_to(folder).as_posix())]
    if not files:
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    skip = {k.replace(".", "/") for keys in WALL_CLOCK.values() for k in keys}
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"] if tag not in skip}


def _difference(got, want) -> str:
    """Where two compared contents first differ, shortly."""
    if isinstance(got, bytes) and isinstance(want, bytes):
        i = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
        return f"byte {i} of {len(got)} / {len(want)}: {got[max(0, i - 40):i + 80]!r} / {want[max(0, i - 40):i + 80]!r}"
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            if got.get(k) != want.get(k):
                return f"[{k!r}] " + _difference(got.get(k), want.get(k))
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        i = next(i for i, (x, y) in enumerate(zip(got, want)) if x != y)
        return f"[{i}] " + _difference(got[i], want[i])
    return f"{str(got)[:300]} / {str(want)[:300]}"


def assert_same_folder(got: Path, want: Path) -> None:
    a, b = snapshot(got), snapshot(want)
    extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not extra and not missing, f"{got} holds {extra} beyond {want}'s and lacks {missing}"
    differ = [k for k in b if a[k] != b[k]]
    assert not differ, f"{got}: these differ from the uninterrupted run's: {differ}; the first: {_difference(a[differ[0]], b[differ[0]])}"
    assert tensorboard_scalars(got) == tensorboard_scalars(want), f"{got}: TensorBoard's scalars differ"


def assert_one_line(stderr: str, *needles: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, f"not one line:\n{stderr[-3000:]}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------------------------------------------- the commands


@dataclass
class Long:
    """A long command: its arguments for an output, the folder it fills, when it has written something, and how it is
    run again (the trainings continue with ``--resume``, as their refusal of a folder with checkpoints says)."""

    argv: Callable[[dict, Path], list]  # (the reference outputs it reads, out) -> arguments
    begun: Callable[[Path], bool]  # out -> whether it has written something
    reads: tuple[str, ...] = ()  # the reference outputs it reads (fixture names)
    again: tuple[str, ...] = ()  # added to the rerun
    announce: tuple[str, float, int] | None = None  # killed at the N-th call of a function instead (RUNNER): mid-write
    held: Callable[[Path], Path] = lambda out: out  # what it holds (its lock beside it)


def _any(pattern: str, n: int = 1) -> Callable[[Path], bool]:
    """Whether ``n`` files matching ``pattern`` are there (more than a batch's: a rerun resumes past whole batches)."""
    return lambda out: sum(1 for _ in zip(range(n), out.glob(pattern))) == n


COMMANDS: dict[str, Long] = {
    "synth": Long(lambda i, o: ["synth", o, "--hours", "0.05", "--speakers", "8", "--seed", "3", "--workers", "1", "--quiet"],
                  _any("audio/*/*.wav")),
    "data import": Long(lambda i, o: ["data", "import", "folder", i["synth"] / "audio", o, "--workers", "1", "--quiet"],
                        lambda o: False, reads=("synth",), announce=("os.fsync", 2.0, 2)),  # writing the first manifest
    "features stats": Long(lambda i, o: ["features", "stats", i["corpus"], "--out", o / "feature_stats.json", "--quiet"],
                           lambda o: False, reads=("corpus",), announce=("os.fsync", 3.0, 1),  # writing the statistics
                           held=lambda o: o / "feature_stats.json"),
    "pretrain": Long(lambda i, o: ["pretrain", i["pretrain_config"], "--set", f"out_dir={o}", "--quiet"],
                     lambda o: False, reads=("pretrain_config",), again=("--resume",),
                     announce=("safetensors.torch.save_file", 3.0, 2)),  # step 4's checkpoint: its weights, not its state
    "units fit": Long(lambda i, o: ["units", "fit", "--encoder", ENCODER, "--layer", "1", "--corpus", i["corpus"], "--frames",
                                    "2000", "--kind", "kmeans", "--k", "16", "--niter", "5", "--max-duration", "4", "--out", o,
                                    "--quiet"],
                      lambda o: False, reads=("corpus",), announce=("numpy.save", 3.0, 1)),  # writing the sample's shard
    "units encode": Long(lambda i, o: ["units", "encode", i["units fit"], "--corpus", i["corpus"], "--splits", "train,dev,test",
                                       "--max-duration", "8", "--out", o, "--quiet"],
                         lambda o: False, reads=("units fit", "corpus"), announce=("numpy.save", 3.0, 13)),  # array 13
    "asr train": Long(lambda i, o: ["asr", "train", i["asr_config"], "--set", f"out_dir={o}", "--quiet"],
                      lambda o: False, reads=("asr_config",), again=("--resume",),
                      announce=("safetensors.torch.save_file", 3.0, 2)),  # step 4's checkpoint: its weights, not its state
    "asr decode": Long(lambda i, o: ["asr", "decode", i["asr train"], "--splits", "dev,test", "--beam", "2", "--out", o, "--quiet"],
                       _any("hyp_dev.txt"), reads=("asr train",)),
    "evaluate": Long(lambda i, o: ["evaluate", i["pretrain"], "--corpus", i["corpus"], "--tasks", "sid", "--epochs", "2", "--lrs",
                                   "1e-3", "--no-target-analysis", "--probe-jobs", "1", "--out", o, "--quiet"],
                     lambda o: False, reads=("pretrain", "corpus"), announce=("numpy.save", 3.0, 25)),  # state 25
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("interrupt").resolve()


class References(dict):
    """Each command's uninterrupted output (made once, on first use), and the configs and corpus they read."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, name: str):
        if name == "corpus":  # the synthesized corpus with its statistics, as pre-training reads it
            corpus = self.root / "corpus"
            shutil.copytree(self["synth"], corpus)
            from speechrq.data.corpus import relocate

            relocate(corpus)  # the documented way to move a corpus
            self[name] = corpus
            shutil.copy(self["features stats"] / "feature_stats.json", corpus / "feature_stats.json")
            return corpus
        if name == "pretrain_config":
            path = self.root / "pretrain.yaml"
            cfg = tiny_pretrain_config(self["corpus"], "unused", optim={"max_steps": STEPS},
                                       train={"checkpoint_every": 2, "keep_last": 2})
            path.write_text(yaml.safe_dump(cfg))
        elif name == "asr_config":
            path = self.root / "asr.yaml"
            cfg = {"out_dir": "unused", "data": {"units": str(self["units encode"]), "input": "units", "max_duration": 8.0,
                                                 "num_buckets": 4, "vocab_size": 40},
                   "model": {"preset": "tiny"}, "optim": {"lr": 2e-3, "warmup_steps": 2, "max_steps": STEPS},
                   "train": {"seed": 0, "device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 2, "keep_last": 2}}
            path.write_text(yaml.safe_dump(cfg))
        else:
            spec = COMMANDS[name]
            inputs = {r: self[r] for r in spec.reads}
            path = self.root / name.replace(" ", "_") / "ref"
            ok(*spec.argv(inputs, path))
        self[name] = path
        return path


@pytest.fixture(scope="module")
def refs(root) -> References:
    return References(root)


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@pytest.mark.slow
@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_killed_command_run_again_gives_the_uninterrupted_output(command, sig, refs, root):
    spec = COMMANDS[command]
    want = refs[command]
    inputs = {r: refs[r] for r in spec.reads}
    out = root / command.replace(" ", "_") / sig
    marker = root / f"{command.replace(' ', '_')}_{sig}.begun"
    begun = (lambda: marker.exists()) if spec.announce else (lambda: spec.begun(out))
    k = run_killed(spec.argv(inputs, out), SIGNALS[sig], begun, spec.announce, marker)
    folder = out  # (features stats: --out names a file in it)
    assert lock_is_free(spec.held(out)), f"{spec.held(out)}: still held after its writer (pid {k.pid}) was killed: a rerun would be refused"
    if sig == "SIGTERM":
        assert k.returncode == 128 + signal.SIGTERM, k.stderr[-3000:]
        assert_one_line(k.stderr, "speechrq: stopped by SIGTERM; nothing half-written was kept: the same command ",
                        *spec.again)  # a training run again needs --resume: the line says so
        if folder.exists():
            assert temporaries(folder) == [], "SIGTERM left temporaries"
    else:
        assert k.returncode == -signal.SIGKILL
        if spec.announce:  # killed mid-write: the temporary is left, for the rerun to remove
            assert temporaries(folder), "killed mid-write, yet no temporary is left: the test missed its point"
    assert not folder.exists() or snapshot(folder) != snapshot(want), "killed after it had finished"
    ok(*spec.argv(inputs, out), *spec.again)
    assert temporaries(folder) == []
    assert_same_folder(folder, want)


# ---------------------------------------------------------------------------------------------------- two writers


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "speechrq", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)


def _refused_and_kept(procs: list[subprocess.Popen], out: Path) -> subprocess.Popen:
    """Of two writers of ``out``, one is refused in one line naming ``out`` and the other (whichever asked second: two
    processes started together race for the lock), which finishes; returns the one that wrote."""
    errs = [p.communicate(timeout=900)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], f"exit statuses {codes}:\n" + "\n".join(e[-2000:] for e in errs)
    r = codes.index(2)
    writer = procs[1 - r]
    assert_one_line(errs[r], f"{out}: in use by process {writer.pid}", "speechrq: error:")
    return writer


def test_two_asr_trainings_into_one_out_dir_one_is_refused_and_the_log_is_one_run(refs, root):
    """The issue's first input: two ``asr train`` with the same out_dir started half a second apart."""
    from speechrq.training.engine import read_metrics

    out = root / "two_writers" / "asr"
    args = ["asr", "train", refs["asr_config"], "--set", f"out_dir={out}", "--quiet"]
    first = _start(*args)
    time.sleep(0.5)
    second = _start(*args)
    _refused_and_kept([first, second], out)
    steps = [m["step"] for m in read_metrics(out)]
    assert steps == list(range(1, STEPS + 1)), f"metrics.jsonl holds steps {steps}: not one run's"
    assert_same_folder(out, refs["asr train"])  # and exactly what one uninterrupted run writes


def test_two_asr_comparisons_into_one_out_one_is_refused_and_compare_json_is_intact(refs, root):
    """The issue's second input: two ``asr compare ... --out X`` at once (one died with FileNotFoundError when the
    other's pruning deleted its temporary checkpoint; or both finished with every system trained twice)."""
    from test_discrete_asr import write_asr_config

    from speechrq.io import read_json
    from speechrq.training.engine import read_metrics

    write_asr_config(root / "compare_asr.yaml", steps=2)
    out = root / "two_writers" / "compare"
    args = ["asr", "compare", root / "compare_asr.yaml", "--encoder", ENCODER, "--layer", "1", "--corpus", refs["corpus"],
            "--out", out, "--k", "8", "--pq", "", "--rpq", "2", "--alpha", "0.5", "--frames", "1000", "--no-continuous",
            "--test-split", "dev", "--beam", "1", "--quiet"]
    _refused_and_kept([_start(*args), _start(*args)], out)
    report = read_json(out / "compare.json")
    assert set(report["rows"]) == {"k-means (k=8)", "RPQ (M=2, α=0.5)"}
    assert all(row["steps"] == 2 for row in report["rows"].values())
    runs = sorted(p.parent for p in (out / "runs").rglob("metrics.jsonl"))
    assert len(runs) == 2 and all([m["step"] for m in read_metrics(run)] == [1, 2] for run in runs)
    assert temporaries(out) == []


# ---------------------------------------------------------------------------------------------------- a full disk


def disk_usage(folder: Path) -> int:
    """Bytes ``folder``'s files take on a tmpfs (whole pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at ``tmp_path/disk``: ``mount(size)`` mounts it, ``mount(size)`` again resizes it (free space)."""
    from test_lock import _mount_tmpfs

    where = tmp_path / "disk"
    mounted = []

    def mount(size: int) -> Path:
        if not mounted:
            if not _mount_tmpfs(where, str(size)):
                pytest.skip("cannot mount a small tmpfs here (not root, or no mount permission): the full-disk tests need one")
            mounted.append(where)
        else:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True)
        return where

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_units_encode_on_a_full_disk_is_one_line_leaves_nothing_to_trust_and_the_rerun_is_whole(refs, small_disk):
    from lhotse import CutSet

    want = refs["units encode"]
    disk = small_disk(disk_usage(want) // 2)
    out = disk / "enc"
    args = COMMANDS["units encode"].argv({r: refs[r] for r in COMMANDS["units encode"].reads}, out)
    r = speechrq(*args)
    assert r.returncode == 2, r.stderr[-3000:]
    line = assert_one_line(r.stderr, "no space left on the device", "speechrq: error:")
    print(line)
    assert re.search(rf"{re.escape(str(out))}(/arrays)?: ", line) and "while writing" in line, line
    assert temporaries(out) == []
    for manifest in out.glob("cuts_*.jsonl.gz"):  # a manifest kept is whole: every array it names is there
        for cut in CutSet.from_file(manifest):
            assert Path(cut.custom["units"].array.storage_path, cut.custom["units"].array.storage_key).is_file()
    small_disk(4 * disk_usage(want) + (1 << 20))
    ok(*args)
    assert_same_folder(out, want)


def test_asr_train_checkpoint_on_a_full_disk_is_one_line_leaves_no_checkpoint_and_the_rerun_is_whole(refs, small_disk):
    from speechrq.checkpoint import list_checkpoints

    want = refs["asr train"]
    ckpt = next((want / "checkpoints").iterdir())
    weights = (ckpt / "model.safetensors").stat().st_size
    disk = small_disk(weights + (1 << 20))  # the weights fit, the optimizer state after them does not
    out = disk / "asr"
    args = ["asr", "train", refs["asr_config"], "--set", f"out_dir={out}", "--quiet"]
    r = speechrq(*args)
    assert r.returncode == 2, r.stderr[-3000:]
    print(assert_one_line(r.stderr, "no space left on the device", str(out / "checkpoints"), "step_00000002", "a checkpoint"))
    assert temporaries(out) == [] and list_checkpoints(out / "checkpoints") == []
    assert not any(p.name.startswith(".step_") for p in (out / "checkpoints").iterdir())
    small_disk(4 * disk_usage(want) + (1 << 20))
    ok(*args)  # no checkpoint was kept: the same command starts again
    assert_same_folder(out, want)


# ---------------------------------------------------------------------------------------------------- worker processes

WORKERS = """
import time
from speechrq.parallel import run_in_processes
run_in_processes(time.sleep, [300, 300], 2, progress=False)
"""


def _workers(pid: int) -> list[int]:
    """The worker processes (multiprocessing's spawned ones) of process ``pid`` alive now."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [c for c in children if _alive(c) and b"spawn_main" in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _maps(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running, not ended (a zombie nobody reaps has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_of_a_command_killed_by_sigkill_end_with_it():
    """``--jobs`` / ``--probe-jobs`` workers (speechrq.parallel) and ``synth``'s shard processes (the SIGKILL case of
    synth above: a forked shard holds the folder's lock) outlive a SIGKILLed parent unless made to end with it: they
    would go on writing into a folder a rerun then writes too."""
    proc = subprocess.Popen([sys.executable, "-c", WORKERS], env=ENV, cwd=ROOT, stderr=subprocess.DEVNULL)  # the
    # killed parent's resource tracker says its semaphores leaked
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while len(workers := _workers(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        while not all(b"libtorch" in _maps(w) for w in workers):  # each past its initializer (it imports torch), in its job
            assert proc.poll() is None and time.monotonic() < deadline, "the workers never began their jobs"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 3
        while (left := [w for w in workers if _alive(w)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"workers {left} outlived their parent, killed by SIGKILL"
    finally:
        proc.kill()
        proc.wait()
        for w in workers:  # never left running, whatever failed
            if _alive(w) and b"spawn_main" in _cmdline(w):
                os.kill(w, signal.SIGKILL)

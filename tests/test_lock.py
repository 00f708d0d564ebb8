"""One writer per output folder (speechrq.lock), stale temporaries (speechrq.io), termination signals and a full disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechrq.cli import main
from speechrq.errors import SpeechrqError
from speechrq.lock import hold, lock_file

HOLDER = """
import sys, time
from speechrq.lock import hold
with hold(sys.argv[1], "a test's output"):
    print("held", flush=True)
    time.sleep(120)
"""


def start_holder(path: Path, env: dict | None = None) -> subprocess.Popen:
    """Another process holding ``path`` (returns once it holds it)."""
    import select

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        proc.kill()
        raise AssertionError(f"the holder of {path} did not take it within 60 s")
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(path, env=None):
        procs.append(start_holder(path, env))
        return procs[-1]
    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_second_process_is_refused_naming_the_folder_and_the_holder(tmp_path, holder):
    out = tmp_path / "run"
    proc = holder(out)
    with pytest.raises(SpeechrqError) as e:
        with hold(out, "a run"):
            pass
    msg = str(e.value)
    assert "\n" not in msg and str(out) in msg and f"process {proc.pid}" in msg and "a test's output" in msg
    assert not out.exists()  # the lock sits beside the folder: nothing is written into it
    assert lock_file(out) == out.parent / ".run.lock"


def test_a_killed_holder_never_blocks_the_next_run(tmp_path, holder):
    out = tmp_path / "run"
    proc = holder(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with hold(out, "a run"):
        assert str(out.resolve()) in __import__("speechrq.lock", fromlist=["held"]).held()


def test_holding_is_reentrant_in_one_process_and_released_at_the_end(tmp_path):
    out = tmp_path / "run"
    with hold(out, "a study"):
        with hold(out / ".." / "run", "a run inside it"):  # another spelling of the same folder
            pass
        r = subprocess.run([sys.executable, "-c", HOLDER, str(out)], capture_output=True, text=True, timeout=60,
                           input="")
        assert r.returncode != 0 and "in use by process" in r.stderr
    proc = start_holder(out)  # released: another process may take it now
    proc.kill()
    proc.wait()


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, holder):
    from speechrq.io import atomic_path, temp_owner

    out = tmp_path / "units"
    (out / "arrays").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = holder(tmp_path / "other")  # a live process that is not this one
    stale = out / "arrays" / f".a.npy.tmp-{dead.pid}-x1y2.npy"
    stale_dir = out / f".step_00000004.tmp-{dead.pid}"
    kept = out / "arrays" / f".b.npy.tmp-{live.pid}-z.npy"
    for f in (stale, kept):
        f.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half")
    (out / "arrays" / "c.npy").write_bytes(b"whole")
    with hold(out, "units"):
        pass
    assert not stale.exists() and not stale_dir.exists()
    assert kept.exists() and (out / "arrays" / "c.npy").exists()
    # every temporary atomic_path makes is named so that this cleanup recognises it
    with atomic_path(out / "d.npy") as tmp:
        assert temp_owner(tmp.name) == os.getpid() and tmp.name.endswith(".npy")


def test_pruning_never_touches_a_live_process_s_temporary(tmp_path, holder):
    import torch

    from speechrq.checkpoint import prune_checkpoints, save_checkpoint, step_dir

    live = holder(tmp_path / "other")
    theirs = tmp_path / "ckpt" / f".step_00000005.tmp-{live.pid}"
    theirs.mkdir(parents=True)
    (theirs / "meta.json").write_text("{}")
    for s in (1, 2, 3):
        save_checkpoint(step_dir(tmp_path / "ckpt", s), {"w": torch.zeros(1)}, {}, {"step": s})
    prune_checkpoints(tmp_path / "ckpt", keep_last=1)
    assert theirs.exists() and (theirs / "meta.json").exists()


def test_under_torchrun_rank_0_holds_and_the_other_ranks_wait_for_their_job(tmp_path, holder, monkeypatch):
    out = tmp_path / "run"
    job = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29512", "TORCHELASTIC_RUN_ID": "a"}
    holder(out, job)
    for k, v in job.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("RANK", "1")
    with hold(out, "a run", wait_seconds=5):  # rank 1 of the job whose rank 0 holds it: goes on
        pass
    monkeypatch.setenv("MASTER_PORT", "29513")  # rank 1 of another job: never writes into it
    t0 = time.monotonic()
    with pytest.raises(SpeechrqError, match="rank 0 of this job did not take hold"):
        with hold(out, "a run", wait_seconds=1):
            pass
    assert time.monotonic() - t0 < 30


# every command that writes a folder or file holds it: another process holding it makes each refuse in one line
COMMANDS = {
    "synth": lambda o: ["synth", o, "--hours", "0.01"],
    "data import": lambda o: ["data", "import", "folder", "/nonexistent", o],
    "features stats": lambda o: ["features", "stats", "/nonexistent", "--out", o],
    "pretrain": lambda o: ["pretrain", "configs/pretrain/tiny.yaml", "--set", f"out_dir={o}"],
    "export": lambda o: ["export", "/nonexistent", o],
    "targets rank": lambda o: ["targets", "rank", "/nonexistent", "--corpus", "/nonexistent", "--out", o],
    "report": lambda o: ["report", str(Path(o).parent), "--out", o],
    "units fit": lambda o: ["units", "fit", "--encoder", "/nonexistent", "--layer", "0", "--corpus", "/nonexistent",
                            "--frames", "100", "--kind", "kmeans", "--k", "8", "--out", o],
    "units encode": lambda o: ["units", "encode", "/nonexistent", "--corpus", "/nonexistent", "--out", o],
    "asr train": lambda o: ["asr", "train", "configs/asr/tiny.yaml", "--set", f"out_dir={o}"],
    "asr compare": lambda o: ["asr", "compare", "configs/asr/tiny.yaml", "--encoder", "/nonexistent", "--layer", "-1",
                              "--corpus", "/nonexistent", "--out", o],
    "asr tables": lambda o: ["asr", "tables", "/nonexistent", "--prefix", o],
    "evaluate": lambda o: ["evaluate", "/nonexistent", "--corpus", "/nonexistent", "--out", o],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_writing_command_refuses_a_held_output_in_one_line(command, tmp_path, holder, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)  # the configs/ of the repository
    out = tmp_path / "out"
    proc = holder(out)
    assert main(COMMANDS[command](str(out))) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{out}: in use by process {proc.pid}" in err, err


def test_a_termination_signal_removes_the_temporary_being_written(tmp_path):
    """SIGTERM mid-write: the CLI's handler raises, every atomic writer removes its temporary, exit 128 + 15."""
    script = f"""
import os, signal, sys
from speechrq.errors import install_termination_handlers, Terminated
from speechrq.io import atomic_path
install_termination_handlers()
try:
    with atomic_path({str(tmp_path / 'x.npy')!r}) as tmp:
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)
        tmp.write_bytes(b"whole")
except Terminated as t:
    sys.exit(128 + t.signum)
"""
    r = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert r.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB file system (tmpfs; needs root, as CI and the developers' machines are)."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "256k"):
        pytest.skip("cannot mount a small tmpfs here (not root, or no mount permission): the full-disk tests need one")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk):
    import numpy as np

    from speechrq.io import atomic_path, atomic_write_bytes

    with pytest.raises(SpeechrqError) as e:
        with atomic_path(small_disk / "arrays" / "a.npy", "unit arrays") as tmp:
            np.save(tmp, np.zeros(1_000_000, np.float32))
    msg = str(e.value)
    assert msg.startswith(f"{small_disk / 'arrays'}: no space left") and "a.npy" in msg and "unit arrays" in msg
    with pytest.raises(SpeechrqError, match="no space left"):
        atomic_write_bytes(small_disk / "b.bin", b"x" * 1_000_000)
    assert [p.name for p in small_disk.rglob("*") if p.is_file()] == []


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_temporary(small_disk):
    import torch

    from speechrq.checkpoint import list_checkpoints, save_checkpoint, step_dir

    with pytest.raises(SpeechrqError) as e:
        save_checkpoint(step_dir(small_disk, 1), {"w": torch.zeros(10_000)}, {"opt": torch.zeros(100_000)}, {"step": 1})
    assert "no space left" in str(e.value) and "step_00000001" in str(e.value) and "a checkpoint" in str(e.value)
    assert list(small_disk.iterdir()) == [] and list_checkpoints(small_disk) == []
    with pytest.raises(SpeechrqError, match="no space left"):  # the weights alone overflowing (safetensors)
        save_checkpoint(step_dir(small_disk, 2), {"w": torch.zeros(200_000)}, None, {"step": 2})
    with pytest.raises(SpeechrqError, match="no space left"):  # the trainer state alone overflowing (torch.save)
        save_checkpoint(step_dir(small_disk, 2), {"w": torch.zeros(10)}, {"opt": torch.zeros(200_000)}, {"step": 2})
    assert list(small_disk.iterdir()) == []


def test_an_output_under_a_file_or_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "FILE").write_text("x")
    with pytest.raises(SpeechrqError, match=r"cannot be written: .*FILE is a file, not a folder"):
        with hold(tmp_path / "FILE" / "p", "tables"):
            pass
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(SpeechrqError, match="no permission"):
            with hold(ro / "out", "a run"):
                pass


def test_holding_a_file_or_prefix_removes_its_dead_writers_temporaries_beside_it(tmp_path, holder):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = holder(tmp_path / "other")
    stale = [tmp_path / f".tables.json.tmp-{dead.pid}-a.json", tmp_path / f".tables_figure6.png.tmp-{dead.pid}-b.png"]
    kept = [tmp_path / f".tables.md.tmp-{live.pid}-c.md", tmp_path / ".tables.json", tmp_path / f".other.json.tmp-{dead.pid}-d.json"]
    for f in stale + kept:
        f.write_text("x")
    with hold(tmp_path / "tables", "tables"):  # `asr tables --prefix DIR/tables`
        pass
    assert [f.exists() for f in stale] == [False, False] and all(f.exists() for f in kept)


def test_what_counts_as_a_full_disk():
    import errno

    from speechrq.io import is_disk_full

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # by the code, whatever the text
        assert is_disk_full(OSError(code, "write failed"))
    assert is_disk_full(OSError("1000000 requested and 65504 written"))  # numpy's short write
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))  # torch.save
    assert not is_disk_full(OSError(errno.ENOENT, "No such file or directory"))
    assert not is_disk_full(RuntimeError("shape mismatch"))
    assert not is_disk_full(KeyboardInterrupt())

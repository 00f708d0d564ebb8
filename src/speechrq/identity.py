"""What made a piece of finished work: the identities that key every reuse.

speechrq reuses what an earlier run finished (synthesis shards, statistics, checkpoints,
caches, probes, units, ASR runs, study rows). Each such place records the *identity* of
what made it: its inputs' fingerprints (a corpus's manifests, an encoder's weights, a
quantizer's weights), its settings, and a format number of the code that wrote it.
A later run with the same identity reuses the work; with another, the work is either
recomputed into a fresh place keyed by the identity (caches), or refused in one line
that names the first setting that differs (directories the user named).

- :func:`digest`: 16 hex digits of sha256 over canonical JSON (any JSON-able value);
- :func:`manifest_fingerprint` / :func:`corpus_fingerprint`: a corpus by the *content*
  of its manifests (decompressed, so re-writing the same cuts keeps the fingerprint; paths under
  the folder read relative to it, so moving the folder keeps it too), not its path: a corpus made
  again with another seed into the same folder is another corpus;
- :func:`describe_difference`: the first setting where two identities differ, old and new value;
- :func:`claim`: record an identity in a directory, or check the one recorded there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import SpeechrqError

IDENTITY_FILE = "identity.json"
_MANIFESTS: dict[tuple, str] = {}


def digest(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys), first 16 hex digits."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder_prefixes(folder: Path) -> list[bytes]:
    """How a path under ``folder`` (as it lies now, and as it lay when its manifests were written) starts in a manifest
    line: ``"/abs/folder/`` JSON-escaped (lhotse writes with and without ``ensure_ascii``)."""
    from .data.corpus import written_root

    roots = {str(folder.resolve()), *([written_root(folder)] if written_root(folder) else [])}
    out = set()
    for root in roots:
        for ascii_only in (False, True):
            out.add(json.dumps(root.rstrip("/") + "/", ensure_ascii=ascii_only)[:-1].encode("utf-8"))
    return sorted(out, key=len, reverse=True)


def manifest_fingerprint(path: str | Path) -> str:
    """sha256 of a manifest's decompressed bytes (``.gz`` read through gzip), first 16 hex digits.

    A path under the manifest's own folder counts as relative to it (the folder where it lies now, and where it lay
    when written, :func:`speechrq.data.corpus.written_root`): moving a corpus or units folder, rewritten
    (:func:`speechrq.data.corpus.relocate`) or not, keeps its fingerprint, which is also what the same manifests had
    when speechrq wrote them relative. Paths elsewhere (audio outside the folder) count as written.
    Remembered per process by (path, size, mtime, recorded folder), so a job that asks often reads the file once.
    """
    import gzip

    path = Path(path)
    st = path.stat()
    prefixes = _folder_prefixes(path.parent)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, tuple(prefixes))
    if key not in _MANIFESTS:
        h = hashlib.sha256()
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            for line in f:
                for prefix in prefixes:
                    if prefix in line:
                        line = line.replace(prefix, b'"')
                h.update(line)
        _MANIFESTS[key] = h.hexdigest()[:16]
    return _MANIFESTS[key]


def corpus_fingerprint(corpus_dir: str | Path, splits: str | list[str] | None = None) -> str:
    """The content of a corpus's manifests (``splits``, or all of them), as 16 hex digits.

    Audio paths, durations, texts and labels are in the manifests, so a corpus synthesized again
    with another seed, re-imported from other files or with other labels gets another fingerprint;
    the audio files themselves are not read (a file replaced in place behind an unchanged
    manifest is not detected).
    """
    from .data.corpus import cut_files

    files = cut_files(corpus_dir)
    names = sorted(files) if splits is None else ([splits] if isinstance(splits, str) else sorted(splits))
    missing = [s for s in names if s not in files]
    if missing:
        raise SpeechrqError(f"{corpus_dir}: has no split {missing[0]!r} (it has {', '.join(files)})")
    return digest({s: manifest_fingerprint(files[s]) for s in names})


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of the libraries whose numerics shape a result (e.g. ``torch``, ``faiss``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in packages:
        dist = {"faiss": "faiss-cpu"}.get(p, p)
        try:
            out[p] = version(dist)
        except PackageNotFoundError:
            try:
                out[p] = version("faiss-gpu") if p == "faiss" else "none"
            except PackageNotFoundError:
                out[p] = "none"
    return out


def describe_difference(old: dict, new: dict) -> str:
    """``key: 'old' -> 'new'`` for the first differing key (and how many more differ)."""
    from .config import diff_configs

    keys = diff_configs(old, new)
    if not keys:
        return ""

    def at(d, key):
        for part in key.split("."):
            d = d.get(part) if isinstance(d, dict) else None
        return d

    more = f" (and {len(keys) - 1} more: {', '.join(keys[1:4])}{', ...' if len(keys) > 4 else ''})" if len(keys) > 1 else ""
    return f"{keys[0]} {at(old, keys[0])!r} -> {at(new, keys[0])!r}{more}"


def recorded(directory: str | Path) -> dict | None:
    """The identity recorded in ``directory``, or None."""
    from .io import read_json

    path = Path(directory) / IDENTITY_FILE
    return read_json(path) if path.exists() else None


def claim(directory: str | Path, identity: dict, what: str, hint: str = "use another directory or delete this one",
          defaults: dict | None = None) -> bool:
    """Check ``directory`` against ``identity``, recording it there when new. Returns True if the directory
    already holds work of this identity (reuse it), False if it is new (recorded now; compute into it).

    Raises :class:`SpeechrqError` in one line when the directory holds ``what`` of another identity, naming
    the first setting that differs, or holds files but no identity (made by an older speechrq).
    """
    from .io import atomic_write_json

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SpeechrqError(f"{directory}: a file, not a folder; {hint}")
    old = recorded(directory)
    if old is not None and defaults:  # keys added since: an identity recorded before them held their default
        old = json.loads(json.dumps(defaults, default=str)) | old
    canonical = json.loads(json.dumps(identity, default=str))
    if old is not None:
        if old == canonical:
            return True
        raise SpeechrqError(f"{directory}: holds {what} made with other inputs ({describe_difference(old, canonical)}); {hint}")
    if directory.is_dir() and any(directory.iterdir()):
        raise SpeechrqError(f"{directory}: holds files but no {IDENTITY_FILE} (made by an older speechrq, or not by speechrq): "
                            f"cannot tell what made them; {hint}")
    atomic_write_json(directory / IDENTITY_FILE, canonical)
    return False

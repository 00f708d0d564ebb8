"""``speechrq data download CORPUS DIR``: fetch the corpora whose licence allows a scripted download.

Offered: **LibriSpeech** (OpenSLR resource 12) and **Mini LibriSpeech** (OpenSLR resource 31), both CC BY 4.0, from
``https://www.openslr.org/resources`` or a mirror (``base_url``: https://us.openslr.org/resources,
https://openslr.elda.org/resources). The downloading and unpacking are lhotse's (:func:`lhotse.utils.resumable_download`:
resumed with an HTTP ``Range`` request, a tqdm progress bar; :func:`lhotse.utils.safe_extract`), and the result is laid
out exactly as :func:`lhotse.recipes.librispeech.download_librispeech` lays it out::

    DIR/PART.tar.gz                      the archive, kept
    DIR/LibriSpeech/PART/...             its contents (SPEAKER/CHAPTER/*.flac, *.trans.txt)
    DIR/LibriSpeech/PART/.completed      written last: a part with it is skipped

so ``speechrq data import librispeech DIR/LibriSpeech OUT`` (or lhotse's ``prepare_librispeech``) reads it.

What this module adds to lhotse's download, and why:

- **The size is checked.** ``resumable_download`` stops without an error when the server closes the connection early
  (``http.client`` then returns ``b""``), so the file's size is compared with the server's ``Content-Length`` (a
  ``HEAD`` request first). A short file is kept and the error says so: the same command resumes it.
- **The content is checked.** The LibriSpeech archives' SHA-256 (:data:`SHA256`, the digests torchaudio's
  ``LIBRISPEECH`` dataset checks) is compared before anything is extracted; a wrong digest removes the file (a
  corrupt archive cannot be resumed into a good one). Mini LibriSpeech's archives have no digest we can vouch for:
  they are **checked by size only**.
- **An interrupted extraction is redone**: the archive is extracted into ``DIR/.PART.extracting/``, the marker written
  there after the last file, and the part then renamed into ``DIR/LibriSpeech/``; a part never appears half-extracted.
- **A stalled connection ends**: no data for :data:`TIMEOUT_S` seconds is a one-line error, the partial file kept.

Corpora that need a login or an accepted licence are not downloaded: :data:`GATED` says where to get each; then
``speechrq data import KIND SRC OUT`` imports it. Every problem is a one-line :class:`~speechrq.errors.SpeechrqError`.
Nothing here imports lhotse until a download starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpeechrqError

DEFAULT_BASE_URL = "https://www.openslr.org/resources"
MIRRORS = ("https://us.openslr.org/resources", "https://openslr.elda.org/resources")
TIMEOUT_S = 60.0
"""Seconds without data (or without an answer to connect) before a download is given up, its partial file kept."""
CHUNK = 1 << 20  # bytes read at a time when hashing
# lhotse's resumable_download sends this User-Agent (picky servers answer 403 to urllib's own); the HEAD request sends it too
USER_AGENT = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_4) AppleWebKit/603.1.30 (KHTML, like Gecko) Version/10.1 "
              "Safari/603.1.30")


@dataclass(frozen=True)
class Corpus:
    """A corpus that may be downloaded by a script: its OpenSLR resource, its parts and the ``data import`` kind."""

    name: str
    resource: int  # OpenSLR resource number: the archives are BASE_URL/RESOURCE/PART.tar.gz
    parts: dict[str, str]  # part -> its archive's size as OpenSLR lists it (for messages and --help)
    default_parts: tuple[str, ...]  # () : --parts is required
    root: str = "LibriSpeech"  # the folder the archives extract into (DIR/ROOT/PART)
    import_kind: str = "librispeech"


CORPORA: dict[str, Corpus] = {
    "librispeech": Corpus("librispeech", 12, {
        "dev-clean": "337M", "dev-other": "314M", "test-clean": "346M", "test-other": "328M",
        "train-clean-100": "6.3G", "train-clean-360": "23G", "train-other-500": "30G"}, default_parts=()),
    "mini_librispeech": Corpus("mini_librispeech", 31, {"dev-clean-2": "126M", "train-clean-5": "332M"},
                               default_parts=("dev-clean-2", "train-clean-5")),
}

SHA256: dict[str, str | None] = {
    # LibriSpeech (OpenSLR 12): the digests torchaudio's LIBRISPEECH dataset checks
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
    # Mini LibriSpeech (OpenSLR 31): no digest we can vouch for; checked by size (the server's Content-Length) only
    "dev-clean-2": None,
    "train-clean-5": None,
}
"""Archive part -> the SHA-256 (hex) its download must have; None: checked by size only."""

GATED: dict[str, str] = {
    "voxceleb1": "request access at https://www.robots.ox.ac.uk/~vgg/data/voxceleb/",
    "commonvoice": "accept the terms at https://commonvoice.mozilla.org/datasets (or the Mozilla Data Collective)",
    "mlsuperb": "download it from https://multilingual.superbbenchmark.org/",
    "wenetspeech": "apply for the password at https://wenet.org.cn/WenetSpeech/",
    "timit": "obtain LDC93S1 from the LDC at https://catalog.ldc.upenn.edu/LDC93S1",
    "fsc": "fill in the Fluent Speech Commands licence form from fluent.ai",
    "iemocap": "submit the release form at https://sail.usc.edu/iemocap/",
}
"""Corpora that need a login or an accepted licence (the ``data import`` kind) -> where to get them."""


def _choices() -> str:
    return f"download: {', '.join(CORPORA)}; get by hand, then `speechrq data import`: {', '.join(GATED)}"


def corpus_info(name: str) -> Corpus:
    """The downloadable corpus ``name``.

    Raises :class:`SpeechrqError` (one line) for a corpus in :data:`GATED` (where to get it, and the ``data import``
    command that then imports it) and for an unknown name (listing the valid ones).
    """
    if name in CORPORA:
        return CORPORA[name]
    if name in GATED:
        raise SpeechrqError(f"{name} is not downloaded by speechrq (it needs a login or an accepted licence): {GATED[name]}; "
                            f"then `speechrq data import {name} SRC OUT` imports your copy")
    raise SpeechrqError(f"unknown corpus {name!r} ({_choices()})")


def _part_list(corpus: Corpus) -> str:
    return ", ".join(f"{p} ({size})" for p, size in corpus.parts.items())


def resolve_parts(name: str, parts: str | Sequence[str] | None) -> list[str]:
    """The parts of corpus ``name`` to download: ``parts`` as a comma-separated string or a list (duplicates dropped,
    order kept), or the corpus's default when None.

    Raises :class:`SpeechrqError` (one line) for an unknown or gated corpus (:func:`corpus_info`), an unknown part
    (listing the corpus's parts), or no parts where the corpus has no default (LibriSpeech: listing its parts and
    their archive sizes, so that nobody starts a 60 GB download by accident).
    """
    corpus = corpus_info(name)
    if parts is None:
        if not corpus.default_parts:
            raise SpeechrqError(f"{name}: choose the parts with --parts (comma-separated): {_part_list(corpus)}")
        return list(corpus.default_parts)
    items = parts.split(",") if isinstance(parts, str) else list(parts)
    chosen = list(dict.fromkeys(p.strip() for p in items if p.strip()))
    if not chosen:
        raise SpeechrqError(f"{name}: --parts names no part; choose from {_part_list(corpus)}")
    if unknown := [p for p in chosen if p not in corpus.parts]:
        raise SpeechrqError(f"{name}: unknown part{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                            f"(parts: {', '.join(corpus.parts)})")
    return chosen


def human_size(n: int) -> str:
    """``n`` bytes in decimal units, as tqdm shows them: ``"1.2 MB"``, ``"830.0 kB"``, ``"12 B"``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _reason(e: BaseException) -> str:
    """An urllib/socket error in a few words."""
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason.strerror or e.reason) if isinstance(e.reason, OSError) else str(e.reason)
    if isinstance(e, TimeoutError):
        return f"no data for {TIMEOUT_S:.0f} s"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def remote_size(url: str) -> int:
    """The size in bytes of the file at ``url``: the ``Content-Length`` of a ``HEAD`` request.

    Raises :class:`SpeechrqError` naming the URL and the reason for an HTTP error (404, ...), a connection error or
    timeout (:data:`TIMEOUT_S` seconds), or an answer without a ``Content-Length`` (the download could not be checked).
    """
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise SpeechrqError(f"{url}: {_reason(e)}") from None
    if length is None or not length.strip().isdigit():
        raise SpeechrqError(f"{url}: the server gives no size (Content-Length), so the download could not be checked")
    return int(length)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_and_bounded(progress: bool) -> Iterator[None]:
    """While a download runs: sockets time out after :data:`TIMEOUT_S` seconds without data (lhotse's
    ``resumable_download`` gives ``urlopen`` no timeout, and a stalled connection would hang for ever), and without
    ``progress`` its tqdm bar (which has no switch) writes to the null device."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        if progress:
            yield
        else:
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch(url: str, path: Path, *, expected_sha256: str | None, progress: bool = True) -> int:
    """Download ``url`` to ``path``, resuming a partial ``path``, and check it; returns its size in bytes.

    The server's size comes first (:func:`remote_size`); a ``path`` of that size is not downloaded again, one larger is
    removed and downloaded afresh. After lhotse's :func:`~lhotse.utils.resumable_download` the size is compared again,
    then the SHA-256 when ``expected_sha256`` is given.

    Raises :class:`SpeechrqError` (one line):

    - a connection or HTTP error, or no data for :data:`TIMEOUT_S` seconds: naming the URL and the reason, the
      partial file kept (the same call resumes it);
    - a file shorter than the server's size (the connection closed early): how far it got, the partial file kept;
    - a file longer than the server's size (a server that ignored the resume request and sent the whole file again):
      the file removed;
    - a wrong SHA-256: the file, the expected and the actual digest; the file removed.
    """
    import http.client
    import urllib.error

    from lhotse.utils import resumable_download

    expected = remote_size(url)
    name, where = path.name, path.parent
    if path.exists() and path.stat().st_size > expected:
        path.unlink()  # not a prefix of this archive: lhotse would ask for a range past its end
    if not path.exists() or path.stat().st_size < expected:
        try:
            with _quiet_and_bounded(progress):
                resumable_download(url, filename=path, completed_file_size=expected)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            got = path.stat().st_size if path.exists() else 0
            kept = (f"; {human_size(got)} of {human_size(expected)} kept in {where}, run the same command again to resume it"
                    if got else "")
            raise SpeechrqError(f"{url}: {_reason(e)}{kept}") from None
    size = path.stat().st_size if path.exists() else 0
    if size < expected:
        raise SpeechrqError(f"{name}: the download stopped at {human_size(size)} of {human_size(expected)} (kept in {where}); "
                            "run the same command again to resume it")
    if size > expected:
        path.unlink()
        raise SpeechrqError(f"{name}: {size} bytes, more than the server's {expected} (did it ignore the resume request?); "
                            f"removed from {where}, run the same command again to download it afresh")
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256.lower():
            path.unlink()
            raise SpeechrqError(f"{name}: SHA-256 is {actual}, expected {expected_sha256}: removed from {where} (a corrupt "
                                "archive cannot be resumed into a good one); run the same command again to download it afresh")
    return size


def extract_part(archive: Path, target_dir: Path, root: str, part: str) -> Path:
    """Extract ``archive`` (a verified ``.tar.gz`` holding ``ROOT/PART/...``) so that ``target_dir/ROOT/PART`` appears
    whole, with its ``.completed`` marker, or not at all; returns that folder.

    The archive is extracted (:func:`lhotse.utils.safe_extract`: no member outside the folder) into
    ``target_dir/.PART.extracting`` (removed first: an interrupted extraction is redone), the marker written there
    after the last file, then the part renamed into place (replacing a part folder without a marker) and the archive's
    top-level files (``SPEAKERS.TXT``, ...) moved beside it.

    Raises :class:`SpeechrqError` (one line) for an archive that is not a readable tar.gz (removed: only a fresh
    download can mend it), that leaves its folder, or that holds no ``ROOT/PART``.
    """
    import gzip
    import tarfile
    import zlib

    from lhotse.utils import safe_extract

    staging = target_dir / f".{part}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            safe_extract(tar, path=staging)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink()
        raise SpeechrqError(f"{archive}: not a readable tar.gz archive ({e}); removed, run the same command again to "
                            "download it afresh") from None
    except Exception as e:  # safe_extract's refusal is a bare Exception
        shutil.rmtree(staging, ignore_errors=True)
        if type(e) is Exception and "Path Traversal" in str(e):
            raise SpeechrqError(f"{archive}: a member would be written outside {staging}; not extracted") from None
        raise
    made = staging / root / part
    if not made.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise SpeechrqError(f"{archive}: holds no {root}/{part}/ folder; not extracted")
    (made / ".completed").touch()  # after the last file; the rename below is the commit
    final_root = target_dir / root
    final_root.mkdir(parents=True, exist_ok=True)
    final = final_root / part
    shutil.rmtree(final, ignore_errors=True)  # a part without its marker (another tool's, or an older layout)
    os.replace(made, final)
    for item in sorted((staging / root).iterdir()):  # SPEAKERS.TXT, CHAPTERS.TXT, ... (the same in every part's archive)
        if item.is_file():
            os.replace(item, final_root / item.name)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def download_corpus(name: str, target_dir: str | os.PathLike, parts: str | Sequence[str] | None = None, *,
                    base_url: str = DEFAULT_BASE_URL, progress: bool = True,
                    say: Callable[[str], None] | None = None) -> Path:
    """Download, check and extract ``parts`` of corpus ``name`` (``"librispeech"``, ``"mini_librispeech"``) into
    ``target_dir`` as lhotse's ``download_librispeech`` does; returns ``target_dir/LibriSpeech``, what
    ``speechrq data import librispeech`` reads.

    ``parts``: see :func:`resolve_parts`. ``base_url``: OpenSLR's resources or a mirror (:data:`MIRRORS`); each archive
    is ``BASE_URL/RESOURCE/PART.tar.gz``. ``progress``: tqdm bars on stderr. ``say``: called with one line per part
    (skipped, downloaded and extracted). A part whose ``.completed`` marker exists is skipped without contacting the
    server. Parts are done in order, and a part done stays done if a later one fails.

    Raises :class:`SpeechrqError` (one line) as :func:`resolve_parts`, :func:`fetch` and :func:`extract_part` do.
    """
    corpus = corpus_info(name)
    chosen = resolve_parts(name, parts)
    say = say or (lambda line: None)
    if not str(target_dir).strip():
        raise SpeechrqError("DIR: empty; name the folder to download into")
    target = Path(target_dir)
    if target.exists() and not target.is_dir():
        raise SpeechrqError(f"{target}: not a directory (DIR is the folder to download into)")
    if not base_url.startswith(("http://", "https://")) or not base_url.split("://", 1)[1].strip("/"):
        raise SpeechrqError(f"--base-url {base_url!r}: expected an http:// or https:// address, e.g. {DEFAULT_BASE_URL}")
    target.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/")
    for part in chosen:
        part_dir = target / corpus.root / part
        if (part_dir / ".completed").is_file():
            say(f"{part}: already downloaded and extracted ({part_dir}), skipping it")
            continue
        url = f"{base}/{corpus.resource}/{part}.tar.gz"
        archive = target / f"{part}.tar.gz"
        digest = SHA256[part]
        size = fetch(url, archive, expected_sha256=digest, progress=progress)
        extract_part(archive, target, corpus.root, part)
        checked = "SHA-256 checked" if digest else "size checked (no published checksum)"
        say(f"{part}: {human_size(size)} from {url}, {checked}, extracted to {part_dir}")
    return target / corpus.root

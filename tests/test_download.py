"""``speechrq data download``: LibriSpeech and Mini LibriSpeech fetched from a local HTTP server (127.0.0.1 only) that
serves small archives with LibriSpeech's real layout, made here; resumed after a cut connection, checked, extracted as
lhotse lays it out, and imported.

Nothing contacts another address: every call passes ``--base-url http://127.0.0.1:PORT``, and an audit hook refuses
(and records) any connection or name lookup of another host while these tests run. The only patching is of
``speechrq.data.download.SHA256``: the test archives cannot carry OpenSLR's real digests.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from speechrq.cli import main
from speechrq.data import download

LOOPBACK = "127.0.0.1"
_GUARD = {"on": False, "seen": []}


def _audit(event: str, args) -> None:
    """While the guard is on: record every host a socket connects to or looks up, and refuse any but 127.0.0.1."""
    if not _GUARD["on"]:
        return
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    _GUARD["seen"].append(host)
    if host not in (LOOPBACK, b"127.0.0.1"):
        raise RuntimeError(f"a test contacted {host!r}: only {LOOPBACK} is allowed")


sys.addaudithook(_audit)  # hooks cannot be removed: this one does nothing unless the guard below is on


@pytest.fixture(autouse=True)
def _loopback_only():
    _GUARD["on"] = True
    try:
        yield
    finally:
        _GUARD["on"] = False


# --------------------------------------------------------------------------- archives with LibriSpeech's layout

# part -> {(speaker, chapter): utterances}; speakers never shared between parts, as in LibriSpeech
LAYOUT = {
    "dev-clean": {("1272", "128104"): 2, ("1462", "170138"): 2},
    "test-clean": {("1089", "134686"): 3},
    "dev-clean-2": {("1919", "142785"): 2},
    "train-clean-5": {("19", "198"): 3, ("26", "495"): 2},
}
RESOURCE = {"dev-clean": 12, "test-clean": 12, "dev-clean-2": 31, "train-clean-5": 31}
WORDS = ["CHAPTER", "ONE", "MISSUS", "RACHEL", "LYNDE", "IS", "SURPRISED", "AND", "THE", "OLD", "HOUSE", "STOOD"]


def _utterances(part: str) -> int:
    return sum(LAYOUT[part].values())


def _make_archive(stage: Path, part: str, seed: int) -> bytes:
    """``PART.tar.gz`` as OpenSLR ships it: LibriSpeech/{BOOKS,CHAPTERS,LICENSE,README,SPEAKERS}.TXT and
    LibriSpeech/PART/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac with SPEAKER-CHAPTER.trans.txt (upper case)."""
    rng = np.random.default_rng(seed)
    root = stage / part / "LibriSpeech"
    speakers = []
    for (spk, chap), n in LAYOUT[part].items():
        folder = root / part / spk / chap
        folder.mkdir(parents=True)
        lines = []
        for k in range(n):
            utt = f"{spk}-{chap}-{k:04d}"
            t = np.arange(int(16000 * rng.uniform(0.4, 0.8))) / 16000  # under a second, each utterance its own audio
            audio = 0.3 * np.sin(2 * np.pi * rng.uniform(120, 400) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(folder / f"{utt}.flac", audio.astype(np.float32), 16000)
            lines.append(f"{utt} {' '.join(rng.choice(WORDS, size=4))}")
        (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
        speakers.append(f"{spk:<5}| F | {part:<16} | 25.03 | Reader {spk}")
    (root / "SPEAKERS.TXT").write_text("; LibriSpeech speakers\n;ID  |SEX| SUBSET           |MINUTES| NAME\n"
                                       + "\n".join(speakers) + "\n")
    (root / "CHAPTERS.TXT").write_text(";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE\n")
    (root / "BOOKS.TXT").write_text(";ID    |BOOK TITLE\n")
    (root / "LICENSE.TXT").write_text("LibriSpeech (c) 2014 by Vassil Panayotov\nCC BY 4.0\n")
    (root / "README.TXT").write_text("LibriSpeech ASR corpus (test archive)\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname="LibriSpeech")
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    stage = tmp_path_factory.mktemp("archives")
    return {part: _make_archive(stage, part, seed) for seed, part in enumerate(LAYOUT)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the local server

@pytest.fixture
def server(archives, monkeypatch):
    """A threading HTTP server on 127.0.0.1 serving /RESOURCE/PART.tar.gz with HEAD and Range (206, 416). ``log`` holds
    (method, path, Range header) per request; ``cut[path] = N`` sends only N bytes of the next GET of path and closes."""
    monkeypatch.setenv("NO_PROXY", LOOPBACK)  # a proxy set in the environment must not see these requests
    monkeypatch.setenv("no_proxy", LOOPBACK)
    state = SimpleNamespace(files={f"/{RESOURCE[p]}/{p}.tar.gz": data for p, data in archives.items()}, log=[], cut={})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _serve(self):
            state.log.append((self.command, self.path, self.headers.get("Range")))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start, end, status = 0, len(data) - 1, 200
            wanted = self.headers.get("Range")
            if wanted and self.command == "GET":
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
                start = int(m[1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                end, status = min(int(m[2]), end) if m[2] else end, 206
            body = data[start:end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if self.command == "GET":
                cut = state.cut.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])  # then the connection closes (HTTP/1.0)

        do_GET = do_HEAD = _serve

    httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://{LOOPBACK}:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["data", "download", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert err.startswith("speechrq: error: ") and err.strip().count("\n") == 0 and "Traceback" not in err, err
    return err.strip()[len("speechrq: error: "):]


def _cuts(out: Path, split: str) -> int:
    from lhotse import CutSet

    return len(CutSet.from_file(out / f"cuts_{split}.jsonl.gz"))


def _completed(dl: Path, part: str) -> bool:
    return (dl / "LibriSpeech" / part / ".completed").is_file()


# --------------------------------------------------------------------------- the corpora offered


def test_mini_librispeech_default_parts_downloaded_and_imported(tmp_path, server, capsys):
    dl, out = tmp_path / "dl", tmp_path / "mini"
    code, stdout, err = _run(capsys, "mini_librispeech", str(dl), "--base-url", server.url, "--import", str(out), "--quiet")
    assert code == 0, err
    for part in ("dev-clean-2", "train-clean-5"):  # the default parts, laid out as lhotse's download_librispeech does
        assert (dl / f"{part}.tar.gz").read_bytes() == server.files[f"/31/{part}.tar.gz"]
        assert _completed(dl, part)
        assert f"{part}: " in stdout and "size checked" in stdout
        assert _cuts(out, part) == _utterances(part)
    assert (dl / "LibriSpeech" / "SPEAKERS.TXT").is_file() and not list(dl.glob(".*.extracting"))
    assert "librispeech corpus" in stdout and "total" in stdout  # data import's own summary
    assert {p for _, p, _ in server.log} == {"/31/dev-clean-2.tar.gz", "/31/train-clean-5.tar.gz"}


def test_librispeech_parts_then_a_second_run_skips_them_and_imports(tmp_path, server, capsys, archives, monkeypatch):
    for part in ("dev-clean", "test-clean"):
        monkeypatch.setitem(download.SHA256, part, _sha(archives[part]))
    dl, out = tmp_path / "dl", tmp_path / "ls"
    code, stdout, err = _run(capsys, "librispeech", str(dl), "--parts", "dev-clean, test-clean", "--base-url", server.url + "/")
    assert code == 0, err  # with progress bars (on stderr)
    assert stdout.count("SHA-256 checked") == 2 and _completed(dl, "dev-clean") and _completed(dl, "test-clean")
    assert f"next: speechrq data import librispeech {dl / 'LibriSpeech'} OUT" in stdout
    assert not (dl / "LibriSpeech" / "train-clean-5").exists()

    server.log.clear()
    code, stdout, err = _run(capsys, "librispeech", str(dl), "--parts", "dev-clean,test-clean", "--base-url", server.url,
                             "--import", str(out), "--quiet")
    assert code == 0, err
    assert server.log == []  # both parts have their marker: the server is not asked anything
    assert stdout.count("already downloaded and extracted") == 2
    assert _cuts(out, "dev-clean") == 4 and _cuts(out, "test-clean") == 3
    from lhotse import CutSet

    cut = next(iter(CutSet.from_file(out / "cuts_dev-clean.jsonl.gz")))
    assert cut.supervisions[0].speaker in ("1272", "1462") and cut.supervisions[0].text.isupper()


def test_a_cut_connection_is_reported_kept_and_resumed(tmp_path, server, capsys, archives):
    path, size = "/31/dev-clean-2.tar.gz", len(archives["dev-clean-2"])
    cut = size // 2
    server.cut[path] = cut
    dl, out = tmp_path / "dl", tmp_path / "mini"
    argv = ["mini_librispeech", str(dl), "--parts", "dev-clean-2", "--base-url", server.url, "--quiet"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert _one_line(err) == (f"dev-clean-2.tar.gz: the download stopped at {download.human_size(cut)} of "
                              f"{download.human_size(size)} (kept in {dl}); run the same command again to resume it")
    assert (dl / "dev-clean-2.tar.gz").stat().st_size == cut  # the partial file stays ...
    assert not (dl / "LibriSpeech").exists()  # ... and nothing is extracted from it

    server.log.clear()
    code, _, err = _run(capsys, *argv, "--import", str(out))
    assert code == 0, err
    assert ("GET", path, f"bytes={cut}-") in server.log  # resumed where it stopped
    assert (dl / "dev-clean-2.tar.gz").read_bytes() == archives["dev-clean-2"]
    assert _completed(dl, "dev-clean-2") and _cuts(out, "dev-clean-2") == 2


def test_an_interrupted_extraction_is_redone(tmp_path, server, capsys, archives):
    dl = tmp_path / "dl"
    (dl / "LibriSpeech" / "dev-clean-2" / "1919").mkdir(parents=True)  # a part half-extracted by an earlier run
    (dl / "LibriSpeech" / "dev-clean-2" / "1919" / "stale.flac").write_bytes(b"half")
    (dl / ".dev-clean-2.extracting" / "LibriSpeech").mkdir(parents=True)
    (dl / "dev-clean-2.tar.gz").write_bytes(archives["dev-clean-2"])  # the archive complete
    code, _, err = _run(capsys, "mini_librispeech", str(dl), "--parts", "dev-clean-2", "--base-url", server.url, "--quiet")
    assert code == 0, err
    assert [m for m, _, _ in server.log] == ["HEAD"]  # complete: only its size asked for
    part = dl / "LibriSpeech" / "dev-clean-2"
    assert not (part / "1919" / "stale.flac").exists() and _completed(dl, "dev-clean-2")
    assert len(list(part.rglob("*.flac"))) == 2 and not (dl / ".dev-clean-2.extracting").exists()


def test_a_wrong_checksum_is_refused_and_the_file_removed(tmp_path, server, capsys, archives, monkeypatch):
    wrong = "0" * 64
    monkeypatch.setitem(download.SHA256, "dev-clean", wrong)
    dl = tmp_path / "dl"
    code, _, err = _run(capsys, "librispeech", str(dl), "--parts", "dev-clean", "--base-url", server.url, "--quiet")
    assert code == 2
    line = _one_line(err)
    assert line.startswith("dev-clean.tar.gz: ") and wrong in line and _sha(archives["dev-clean"]) in line
    assert "removed" in line
    assert not (dl / "dev-clean.tar.gz").exists() and not (dl / "LibriSpeech").exists()


# --------------------------------------------------------------------------- refusals, one line each


def test_unknown_corpus_part_and_missing_parts_are_one_line(tmp_path, capsys):
    dl = tmp_path / "dl"
    code, _, err = _run(capsys, "libri", str(dl), "--base-url", f"http://{LOOPBACK}:9")
    assert code == 2 and "librispeech, mini_librispeech" in _one_line(err)
    code, _, err = _run(capsys, "mini_librispeech", str(dl), "--parts", "dev-clean", "--base-url", f"http://{LOOPBACK}:9")
    assert code == 2 and "dev-clean-2, train-clean-5" in _one_line(err) and "'dev-clean'" in err
    code, _, err = _run(capsys, "librispeech", str(dl), "--base-url", f"http://{LOOPBACK}:9")
    line = _one_line(err)
    assert code == 2 and "--parts" in line and "train-other-500 (30G)" in line and "dev-clean (337M)" in line
    assert not dl.exists() and not list(tmp_path.iterdir())  # no folder, no lock file


@pytest.mark.parametrize("corpus", sorted(download.GATED))
def test_licence_gated_corpora_say_where_to_get_them(tmp_path, capsys, corpus):
    from speechrq.data.recipes import RECIPES

    assert corpus in RECIPES  # what `data import` then reads
    code, _, err = _run(capsys, corpus, str(tmp_path / "dl"), "--base-url", f"http://{LOOPBACK}:9")
    line = _one_line(err)
    assert code == 2 and download.GATED[corpus] in line and f"speechrq data import {corpus} SRC OUT" in line
    assert not list(tmp_path.iterdir())


def test_http_and_connection_errors_name_the_url(tmp_path, server, capsys):
    dl = tmp_path / "dl"
    del server.files["/31/train-clean-5.tar.gz"]
    code, _, err = _run(capsys, "mini_librispeech", str(dl), "--parts", "train-clean-5", "--base-url", server.url, "--quiet")
    assert code == 2 and _one_line(err) == f"{server.url}/31/train-clean-5.tar.gz: HTTP 404 Not Found"
    with socket.socket() as s:  # a port nobody listens on
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    code, _, err = _run(capsys, "mini_librispeech", str(dl), "--parts", "dev-clean-2", "--base-url", f"http://{LOOPBACK}:{port}")
    line = _one_line(err)
    assert code == 2 and line.startswith(f"http://{LOOPBACK}:{port}/31/dev-clean-2.tar.gz: ") and "refused" in line.lower()
    assert not (dl / "LibriSpeech").exists()


def test_only_the_local_server_is_contacted():
    from speechrq.cli import build_parser

    # the default is OpenSLR, which is why every download above passes --base-url
    assert build_parser().parse_args(["data", "download", "mini_librispeech", "x"]).base_url == download.DEFAULT_BASE_URL
    assert download.DEFAULT_BASE_URL == "https://www.openslr.org/resources"
    with pytest.raises(RuntimeError, match="only 127.0.0.1"):  # the guard refuses before any packet leaves
        socket.getaddrinfo("www.openslr.org", 443)
    _GUARD["seen"].pop()
    assert set(_GUARD["seen"]) <= {LOOPBACK}, set(_GUARD["seen"])


def test_bad_destinations_and_addresses_are_refused_before_any_request(tmp_path, capsys):
    """A DIR that is a file, an address that is not http(s), and an --import that is a file: one line each, no request."""
    from speechrq.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, said in ((["mini_librispeech", str(afile), "--base-url", "http://127.0.0.1:9"], "not a directory (DIR"),
                       (["mini_librispeech", str(tmp_path / "d"), "--base-url", "foo"], "expected an http:// or https://"),
                       (["mini_librispeech", str(tmp_path / "d2"), "--base-url", "http://127.0.0.1:9", "--import", str(afile)],
                        "--import")):
        assert main(["data", "download", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and "\n" not in err, err
    assert not (tmp_path / "d").exists() and not (tmp_path / "d2").exists()

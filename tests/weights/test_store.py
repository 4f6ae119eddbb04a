"""Tests of the weights cache: atomic writes and verified downloads from a loopback HTTP server."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from keras_hyper.weights import store

BODY = bytes(range(256)) * 4096 + b"tail"  # a little over 1 MiB, so the download takes two chunks
DIGEST = hashlib.sha256(BODY).hexdigest()
WRONG = "0" * 64


class Server:
    """A loopback HTTP server's state: routes map a path to `(mode, body)`; every request path is recorded.

    Modes: "ok" serves the body, "truncated" announces 100 bytes more than it sends and closes the
    connection; unknown paths get a 404.
    """

    def __init__(self):
        self.port = 0
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server():
    srv = Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            srv.requests.append(self.path)
            if self.path not in srv.routes:
                self.send_error(404)
                return
            mode, body = srv.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + (100 if mode == "truncated" else 0)))
            self.end_headers()
            # HTTP/1.0: the connection closes after this, so a truncated body simply ends early
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Point the cache at a temporary folder, and keep any proxy or offline setting of the host out."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv("KERAS_HYPER_OFFLINE", raising=False)
    monkeypatch.setenv("KERAS_HYPER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_home(monkeypatch, tmp_path):
    assert store.home() == tmp_path / "home"
    monkeypatch.delenv("KERAS_HYPER_HOME")
    assert store.home() == Path.home() / ".keras" / "keras_hyper"


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(BODY)
    assert store.sha256_file(path) == DIGEST


def test_download_verified(server, cache, capsys):
    server.routes["/w/model.pth"] = ("ok", BODY)
    path = store.fetch(server.url("/w/model.pth"), sha256=DIGEST.upper())
    assert path == cache / "downloads" / "model.pth"
    assert path.read_bytes() == BODY
    assert files(cache) == [path]
    assert "model.pth" in capsys.readouterr().err  # the progress bar


def test_filename_and_subdir(server, cache):
    server.routes["/model.safetensors"] = ("ok", BODY)
    path = store.fetch(server.url("/model.safetensors"), filename="a.safetensors", subdir="x/y", progress=False)
    assert path == cache / "x" / "y" / "a.safetensors"


def test_cached_file_reused(server):
    server.routes["/w.bin"] = ("ok", BODY)
    first = store.fetch(server.url("/w.bin"), sha256=DIGEST, progress=False)
    assert store.fetch(server.url("/w.bin"), sha256=DIGEST, progress=False) == first
    assert store.fetch(server.url("/w.bin"), progress=False) == first
    assert server.requests == ["/w.bin"]


def test_sha_mismatch_leaves_nothing(server, cache):
    server.routes["/w.bin"] = ("ok", BODY)
    url = server.url("/w.bin")
    with pytest.raises(store.WeightsIntegrityError) as info:
        store.fetch(url, sha256=WRONG, progress=False)
    assert url in str(info.value) and WRONG in str(info.value) and DIGEST in str(info.value)
    assert files(cache) == []


def test_truncated_download_leaves_nothing(server, cache):
    server.routes["/w.bin"] = ("truncated", BODY)
    url = server.url("/w.bin")
    with pytest.raises(store.DownloadError, match="truncated download") as info:
        store.fetch(url, progress=False)
    assert url in str(info.value)
    assert files(cache) == []


def test_http_error_names_url(server, cache):
    url = server.url("/missing.bin")
    with pytest.raises(OSError, match="404") as info:
        store.fetch(url, progress=False)
    assert url in str(info.value) and "KERAS_HYPER_OFFLINE" in str(info.value)
    assert files(cache) == []


def test_file_url(tmp_path, cache):
    source = tmp_path / "src" / "w.bin"
    source.parent.mkdir()
    source.write_bytes(BODY)
    path = store.fetch(source.as_uri(), sha256=DIGEST, progress=False)
    assert path == cache / "downloads" / "w.bin"
    assert path.read_bytes() == BODY


def test_local_path(tmp_path, cache):
    source = tmp_path / "w.bin"
    source.write_bytes(BODY)
    assert store.fetch(str(source), sha256=DIGEST) == source
    with pytest.raises(store.WeightsIntegrityError):
        store.fetch(str(source), sha256=WRONG)
    with pytest.raises(FileNotFoundError):
        store.fetch(str(tmp_path / "nope.bin"))
    assert files(cache) == []


def test_stale_file_replaced(server, cache):
    server.routes["/w.bin"] = ("ok", BODY)
    stale = cache / "downloads" / "w.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    assert store.fetch(server.url("/w.bin"), sha256=DIGEST, progress=False).read_bytes() == BODY
    assert server.requests == ["/w.bin"]


def test_offline(server, cache, monkeypatch):
    server.routes["/w.bin"] = ("ok", BODY)
    url = server.url("/w.bin")
    dest = cache / "downloads" / "w.bin"
    monkeypatch.setenv("KERAS_HYPER_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        store.fetch(url, sha256=DIGEST, progress=False)
    assert url in str(info.value) and str(dest) in str(info.value)

    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old")
    with pytest.raises(store.WeightsIntegrityError, match="KERAS_HYPER_OFFLINE"):
        store.fetch(url, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == b"old"

    dest.write_bytes(BODY)
    assert store.fetch(url, sha256=DIGEST, progress=False) == dest
    assert server.requests == []


def test_bad_arguments(server):
    with pytest.raises(ValueError, match="64 hex"):
        store.fetch(server.url("/w.bin"), sha256="abc")
    with pytest.raises(ValueError, match="scheme"):
        store.fetch("ftp://127.0.0.1/w.bin")
    with pytest.raises(ValueError, match="filename"):
        store.fetch(server.url("/"))
    assert server.requests == []


def test_atomic_path_success(tmp_path):
    final = tmp_path / "a" / "m.weights.h5"
    with store.atomic_path(final) as temp:
        assert temp.parent == final.parent and temp.exists()
        assert temp.name.startswith(".m.weights.h5.part") and temp.name.endswith(".weights.h5")
        temp.write_bytes(b"new")
    assert files(tmp_path) == [final] and final.read_bytes() == b"new"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_failure(tmp_path, error):
    final = tmp_path / "m.weights.h5"
    final.write_bytes(b"old")
    with pytest.raises(error):
        with store.atomic_path(final) as temp:
            temp.write_bytes(b"partial")
            raise error()
    assert files(tmp_path) == [final] and final.read_bytes() == b"old"


# Files with no pinned sha256 (most official checkpoints publish none): trusted on first use, announced, and
# verified against the recorded digest from then on.


def _source(tmp_path, body=BODY):
    source = tmp_path / "served" / "w.bin"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(body)
    return source


@pytest.mark.once
def test_unpinned_download_is_trusted_on_first_use_and_recorded(tmp_path, cache, capsys):
    url = _source(tmp_path).as_uri()
    path = store.fetch(url, progress=False)
    record = cache / "downloads" / "w.bin.sha256"
    assert files(cache) == [path, record]
    assert record.read_text() == f"{DIGEST}  w.bin\n"  # sha256sum's format: `sha256sum -c` checks it
    err = capsys.readouterr().err
    assert "trusted on first use" in err and DIGEST in err and str(record) in err

    assert store.fetch(url, progress=False) == path
    assert capsys.readouterr().err == ""  # verified against the record, silently


@pytest.mark.once
def test_a_changed_unpinned_file_is_refused(tmp_path, cache):
    url = _source(tmp_path).as_uri()
    path = store.fetch(url, progress=False)
    path.write_bytes(b"a file put in its place")
    forged = hashlib.sha256(b"a file put in its place").hexdigest()
    with pytest.raises(store.WeightsIntegrityError) as info:
        store.fetch(url, progress=False)
    message = str(info.value)
    assert DIGEST in message and forged in message and "delete" in message and f"{path}.sha256" in message
    assert path.read_bytes() == b"a file put in its place"  # refused, not silently replaced

    # the reset the message names: delete both, and the next fetch downloads and records again
    path.unlink()
    store.record_path(path).unlink()
    assert store.fetch(url, progress=False).read_bytes() == BODY


@pytest.mark.once
def test_a_file_put_in_the_cache_by_hand_is_announced(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HYPER_OFFLINE", "1")
    url = "https://example.invalid/w.bin"
    dest = cache / "downloads" / "w.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(BODY)
    assert store.fetch(url, progress=False) == dest
    assert DIGEST in capsys.readouterr().err
    assert store.record_path(dest).read_text().split()[0] == DIGEST
    dest.write_bytes(b"changed")
    with pytest.raises(store.WeightsIntegrityError, match="changed since"):
        store.fetch(url, progress=False)
    store.record_path(dest).write_text("not a digest")
    with pytest.raises(store.WeightsIntegrityError, match="should hold the sha256"):
        store.fetch(url, progress=False)

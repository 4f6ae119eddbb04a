"""The local weights cache: where files live, how they are written, and how they are downloaded.

Files are cached under `home()` (`$KERAS_HYPER_HOME`, default `~/.keras/keras_hyper`). Every file is written
through `atomic_path`, so the cache never holds a partial or unverified file under its final name, and
downloads pinned by a sha256 digest are verified before they are kept. A file with no pinned digest is trusted
on first use, announced: its sha256 is printed and recorded next to it (`<file>.sha256`, in `sha256sum`
format), and every later use is verified against that record, so a file that changes in the cache is refused.

Set `KERAS_HYPER_OFFLINE=1` to never touch the network: `fetch` then only returns files already in the cache
(or local files) and otherwise says where to put the file by hand.
"""

import contextlib
import hashlib
import http.client
import os
import re
import secrets
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

CHUNK = 1 << 20


class WeightsIntegrityError(ValueError):
    """A file's sha256 digest differs from the one it is pinned to."""


class DownloadError(OSError):
    """A file could not be downloaded (network failure, HTTP error, truncated transfer)."""


def home() -> Path:
    """Return the keras-hyper cache root: `$KERAS_HYPER_HOME`, else `~/.keras/keras_hyper`."""
    root = os.environ.get("KERAS_HYPER_HOME")
    return Path(root).expanduser() if root else Path.home() / ".keras" / "keras_hyper"


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to `final_path` and move it onto `final_path` on success.

    The temporary file exists (empty) when yielded. Its name starts with `.` and ends with the final name's
    suffixes (`.x.weights.h5.part<random>.weights.h5`), because some writers, such as Keras'
    `save_weights`, check the suffix. On any exception, KeyboardInterrupt included, the temporary file is
    removed, `final_path` is left as it was, and the exception propagates. Parent directories are created.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.name}.part{secrets.token_hex(6)}{''.join(final.suffixes)}")
    # exclusive creation reserves the name against a concurrent writer of the same file
    temp.open("xb").close()
    try:
        yield temp
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def fetch(
    url: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    subdir: str = "downloads",
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return a local path to the file at `url`, downloading it into the cache if needed.

    Args:
        url: an `http://`, `https://` or `file://` URL, or a local path. A local path is returned as it is
            (after the sha256 check when `sha256` is given); nothing is copied.
        sha256: the expected hex digest. A cached file is re-downloaded when it does not match, and a
            download is discarded when it does not match. Without one, the first file cached under this name
            is trusted, announced on stderr with its sha256, which is recorded in `<file>.sha256`; later calls
            refuse the cached file if it no longer matches that record.
        filename: the name in the cache; defaults to the last component of the URL's path. Pass one when
            several URLs share a basename (e.g. `model.safetensors`).
        subdir: the cache folder under `home()`.
        progress: show a progress bar while downloading.
        timeout: seconds to wait for the server, per blocking operation.

    Returns:
        `home()/subdir/filename`, or the local path itself.

    Raises:
        WeightsIntegrityError: the file does not match `sha256`, or (no `sha256`) a cached file no longer
            matches the digest recorded when it was first used.
        DownloadError: the download failed (the cache then holds neither the file nor a partial copy).
        FileNotFoundError: a local path does not exist, or `KERAS_HYPER_OFFLINE=1` and the file is not cached.
        ValueError: a malformed `sha256`, an unsupported URL scheme, or no usable file name.
    """
    expected = _check_digest(sha256)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file"):
        # a one-letter "scheme" is a Windows drive letter
        if len(parts.scheme) > 1:
            raise ValueError(f"unsupported URL scheme '{parts.scheme}' in '{url}'; use http, https or file")
        return _local(Path(url).expanduser(), expected)

    dest = home() / subdir / _cache_name(url, parts, filename)
    actual = None
    if dest.is_file():
        if expected is None:
            return _trusted(dest, url)
        actual = sha256_file(dest)
        if actual == expected:
            return dest

    # file:// reads a local file, so it is allowed offline
    if _offline() and parts.scheme != "file":
        if actual is not None:
            raise WeightsIntegrityError(
                f"KERAS_HYPER_OFFLINE is set and the cached file '{dest}' for {url} has sha256 {actual}, "
                f"expected {expected}. Replace it by hand with the right file, or unset KERAS_HYPER_OFFLINE."
            )
        raise FileNotFoundError(
            f"KERAS_HYPER_OFFLINE is set and {url} is not in the cache. Download it elsewhere and put it at "
            f"'{dest}'{f' (sha256 {expected})' if expected else ''}, or unset KERAS_HYPER_OFFLINE."
        )

    # a stale copy is useless whatever happens next; dropping it keeps a failed refresh from leaving it behind
    dest.unlink(missing_ok=True)
    record_path(dest).unlink(missing_ok=True)
    with atomic_path(dest) as temp:
        actual = _download(url, temp, dest, progress=progress, timeout=timeout)
        if expected is not None and actual != expected:
            raise WeightsIntegrityError(
                f"sha256 mismatch for {url}: expected {expected}, got {actual}; the download was discarded"
            )
    if expected is None:
        _record(dest, actual, url)
    return dest


def record_path(path: str | os.PathLike) -> Path:
    """Where the sha256 of a cached file with no pinned digest is recorded: `<file>.sha256`."""
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


def _trusted(dest: Path, url: str) -> Path:
    """A cached file with no pinned digest: verified against its record, or recorded now (its first use)."""
    record = record_path(dest)
    actual = sha256_file(dest)
    if not record.is_file():
        # a file put in the cache by hand, or cached before records existed: this is its first use
        _record(dest, actual, url)
        return dest
    fields = record.read_text().split()
    recorded = fields[0].lower() if fields else ""
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise WeightsIntegrityError(
            f"'{record}' should hold the sha256 of '{dest}' but holds {record.read_text()[:80]!r}. Delete it to "
            "trust the cached file as it is now, or delete both files to download it again."
        )
    if actual != recorded:
        raise WeightsIntegrityError(
            f"The cached file '{dest}' ({url}) has sha256 {actual}, but sha256 {recorded} was recorded in "
            f"'{record}' when it was first used: the file changed since. If you replaced it on purpose, delete "
            f"'{record}' to trust the new file; otherwise delete '{dest}' and '{record}' to download it again."
        )
    return dest


def _record(dest: Path, digest: str, url: str) -> None:
    """Trust on first use, announced: print the digest and record it next to the file (`sha256sum` format)."""
    record = record_path(dest)
    with atomic_path(record) as temp:
        temp.write_text(f"{digest}  {dest.name}\n")
    print(
        f"keras-hyper: {url} has no published sha256, so '{dest}' is trusted on first use: sha256 {digest} "
        f"(recorded in '{record}'; later loads are verified against it). Compare it with the publisher's "
        "checksum if there is one.",
        file=sys.stderr,
    )


def _check_digest(sha256: str | None) -> str | None:
    """Normalise a hex sha256 digest, rejecting anything else early rather than as a mismatch later."""
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"sha256 must be 64 hex digits, got '{sha256}'")
    return digest


def _local(path: Path, expected: str | None) -> Path:
    """Return a local file as it is, after checking it against `expected`."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: '{path}'")
    if expected is not None and (actual := sha256_file(path)) != expected:
        raise WeightsIntegrityError(f"sha256 mismatch for '{path}': expected {expected}, got {actual}")
    return path


def _cache_name(url: str, parts: urllib.parse.SplitResult, filename: str | None) -> str:
    """Return the cache file name, refusing names that would escape the cache folder."""
    name = filename or PurePosixPath(urllib.parse.unquote(parts.path)).name
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"cannot derive a cache file name from '{url}' ({name!r}); pass filename=")
    return name


def _offline() -> bool:
    """Whether `KERAS_HYPER_OFFLINE` forbids network access."""
    return os.environ.get("KERAS_HYPER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(url: str, temp: Path, dest: Path, *, progress: bool, timeout: float) -> str:
    """Stream `url` into `temp` and return the sha256 of what was received."""
    digest = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "keras-hyper"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(temp, "wb") as file:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := response.read(CHUNK):
                    file.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:
        reason = str(error) or type(error).__name__
        raise DownloadError(f"could not download {url}: {reason}. {_hint(dest)}") from error
    if total is not None and received != total:
        raise DownloadError(f"truncated download from {url}: received {received} of {total} bytes. {_hint(dest)}")
    return digest.hexdigest()


def _hint(dest: Path) -> str:
    """What to do when the network cannot provide a file."""
    return (
        f"If this machine has no network access, download the file elsewhere, put it at '{dest}' "
        "and set KERAS_HYPER_OFFLINE=1 so that keras-hyper never tries the network."
    )

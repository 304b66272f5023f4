"""The Hugging Face Hub client and the plain-URL downloader: file names, SHA-256 checks, download, snapshot, upload.

This module knows files, not models: :mod:`zoo.modeling` builds models from the directories it returns and
:mod:`zoo.download` adds the registry's releases on top. Every downloaded LFS file is checked against the SHA-256
that the Hub stores it under, so a truncated or tampered copy in the cache is reported (and removed) instead of used.
``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DOWNLOAD_TIMEOUT`` apply as in
``huggingface_hub``, read at each call so that setting them after import works.

Failures are one :class:`~zoo.errors.WeightsError` each, never a transport library's traceback: an unreachable
endpoint is found by one TCP connection (not by huggingface_hub's ~24 s of retries), a cache location that cannot
be written is named, and :func:`download_url` (original releases) has timeouts, a length check and bounded retries.

Example::

    >>> import tempfile; from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(b"speech")
    >>> sha256_of(p)[:12]
    '05fb617ad543'
    >>> verify_sha256(p, "05fb617a")   # a prefix, as torch.hub file names carry, is enough
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

from .errors import WeightsError

#: The two files of a speechzoo model directory or Hub repo.
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_HASH_CHUNK = 1 << 22
_REPO_ID = re.compile(r"^[\w.\-]+/[\w.\-]+(@[\w.\-/]+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: The shortest SHA-256 prefix :func:`verify_sha256` accepts (torch.hub release names carry 8 hex digits).
MIN_SHA256_PREFIX = 8
_SHA256_PREFIX = re.compile(rf"[0-9a-fA-F]{{{MIN_SHA256_PREFIX},64}}")


#: The public Hub; another ``HF_ENDPOINT`` is a private Hub or a mirror.
DEFAULT_ENDPOINT = "https://huggingface.co"
#: Attempts of one plain-URL download (the first + retries after a 5xx, a dropped connection or a stall), and the
#: backoff before the n-th retry: ``RETRY_BACKOFF * 2 ** (n - 1)`` seconds.
DOWNLOAD_ATTEMPTS = 3
RETRY_BACKOFF = 1.0
#: How long an endpoint found unreachable is not asked again in this process (seconds).
UNREACHABLE_FOR = 60.0
#: What to do when the cache cannot be written, appended to :class:`CacheNotWritable`'s message.
NOT_WRITABLE_ADVICE = ("point HF_HOME/HF_HUB_CACHE elsewhere, or fill it (on a machine that can write it) and set "
                       "HF_HUB_OFFLINE=1")


class HubUnavailable(WeightsError):
    """The Hub has no such repo, revision or file, or cannot be reached (and the file is not cached)."""


class NetworkUnreachable(HubUnavailable):
    """A host that refuses connections, does not resolve or does not answer: the network is down or blocked."""


class CacheNotWritable(WeightsError):
    """The cache location cannot be written (read-only file system, another user's folder)."""

    def __init__(self, location: str | os.PathLike) -> None:
        super().__init__(f"the cache location {location} is not writable; {NOT_WRITABLE_ADVICE}")


class _SilentTqdm(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value ("1", "true", "yes", "on")."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hf_home() -> Path:
    """``$HF_HOME`` (default ``~/.cache/huggingface``)."""
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()


def hub_cache() -> Path:
    """The Hub's file cache: ``$HF_HUB_CACHE``, default ``$HF_HOME/hub``."""
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub").expanduser()


def endpoint() -> str:
    """``$HF_ENDPOINT`` without a trailing slash (default: the public Hub)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def ensure_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed; raise :class:`CacheNotWritable` (naming it and what to do) if it cannot be
    created or written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CacheNotWritable(directory) from None
        raise WeightsError(f"cannot create the cache folder {directory}: {e}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CacheNotWritable(directory)
    return directory


_unreachable: dict[tuple[str, int], tuple[float, str]] = {}


def check_reachable(url: str) -> None:
    """Raise :class:`NetworkUnreachable` at once when ``url``'s host cannot be connected to.

    One TCP connection (timeout ``HF_HUB_ETAG_TIMEOUT``, default 10 s) instead of huggingface_hub's five retries of
    a refused connection (~24 s per file); a failure is remembered for :data:`UNREACHABLE_FOR` seconds. Skipped when
    a proxy is configured: the proxy, not this machine, connects to the host.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                       "all_proxy")):
        return
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    failed = _unreachable.get((host, port))
    if failed is not None and time.monotonic() - failed[0] < UNREACHABLE_FOR:
        raise NetworkUnreachable(failed[1])
    try:
        timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        message = f"cannot reach {parsed.scheme}://{parsed.netloc} ({e.strerror or e}): the network is down or blocked"
        _unreachable[(host, port)] = (time.monotonic(), message)
        raise NetworkUnreachable(message) from None
    _unreachable.pop((host, port), None)


# ------------------------------------------------------------------------------------------ checksums
def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``algorithm`` as ``hashlib.new`` names it), read in chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    return file_digest(path, "sha256")


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`WeightsError` unless the file's SHA-256 starts with ``expected`` (a full digest or a prefix of
    at least :data:`MIN_SHA256_PREFIX` hex digits, as torch.hub's ``check_hash`` file names carry).

    An empty or too-short ``expected`` is refused rather than matched: every digest starts with ``""``.
    """
    if not _SHA256_PREFIX.fullmatch(expected):
        raise WeightsError(f"cannot verify {path}: expected SHA-256 {expected!r} is not {MIN_SHA256_PREFIX} to 64 "
                           "hex digits; give the file's full digest (`sha256sum FILE`)")
    digest = sha256_of(path)
    if not digest.startswith(expected.lower()):
        raise WeightsError(f"{path} has SHA-256 {digest}, expected {expected}…: the file is corrupt or was "
                           "tampered with. Delete it and download it again.")


def verify_md5(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`WeightsError` unless the file's MD5 is ``expected`` (for releases that published only MD5)."""
    digest = file_digest(path, "md5")
    if digest != expected.lower():
        raise WeightsError(f"{path} has MD5 {digest}, expected {expected}: the file is corrupt or was tampered with. "
                           "Delete it and download it again.")


# ------------------------------------------------------------------------------------------ download
def hub_file(repo_id: str, filename: str, *, revision: str | None = None, progress: bool = True,
             cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """Download (or find in the cache) one file of a Hub model repo and verify its LFS SHA-256.

    ``cache_dir``, ``force_download``, ``token`` and ``local_files_only`` mean what they mean in
    ``huggingface_hub.hf_hub_download``; ``HF_HUB_OFFLINE`` implies ``local_files_only``. Not in the cache and
    not downloadable (no such repo, revision or file; offline; unreachable) raises :class:`HubUnavailable`; a
    broken transfer (a 5xx twice, a connection dropped mid-body, a size mismatch) or a corrupt file raises
    :class:`~zoo.errors.WeightsError`. Leftover partial downloads of the repo (killed runs) are removed.
    """
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache_dir = Path(cache_dir).expanduser() if cache_dir else hub_cache()
    offline = local_files_only or env_flag("HF_HUB_OFFLINE")
    where = f"{repo_id}@{revision or 'main'}/{filename}"
    cache_only: WeightsError | None = None  # why only the cache can be used although the network may be
    if not offline:
        try:
            ensure_writable(cache_dir)
            check_reachable(endpoint())
        except (CacheNotWritable, NetworkUnreachable) as e:
            cache_only = e
    download = functools.partial(
        hf_hub_download, repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint(),
        force_download=force_download, token=token, local_files_only=offline or cache_only is not None,
        library_name="speechzoo", tqdm_class=None if progress else _SilentTqdm)
    try:
        path = _retry_once_on_5xx(download, HfHubHTTPError)
    except LocalEntryNotFoundError as e:
        if isinstance(cache_only, CacheNotWritable):
            raise cache_only from None
        if cache_only is not None:
            raise NetworkUnreachable(f"{where} is not cached, and {cache_only}") from None
        if offline:  # instead of huggingface_hub's "set local_files_only to False"
            why = "HF_HUB_OFFLINE is set" if env_flag("HF_HUB_OFFLINE") else "local_files_only=True"
            raise HubUnavailable(f"{where} is not available: it is not in the cache ({cache_dir}) and {why}; unset "
                                 "it to download, or fill the cache on a machine with network") from None
        raise HubUnavailable(f"{where} is not available: cannot reach {endpoint()} and it is not cached") from e
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise HubUnavailable(f"{where} is not available: {_first_line(e)}") from None
    except PermissionError:
        raise CacheNotWritable(cache_dir) from None
    except (OSError, httpx2.HTTPError) as e:  # a broken transfer: a dropped connection, a 5xx, a size mismatch, ...
        raise WeightsError(f"downloading {where} from {endpoint()} failed ({_first_line(e)}); nothing was loaded. "
                           "Retry; if it persists, the mirror is broken.") from None
    finally:
        _sweep_incomplete(cache_dir, repo_id)
    blob = Path(os.path.realpath(path))
    if _SHA256.match(blob.name):  # LFS blobs are stored under their SHA-256
        try:
            verify_sha256(blob, blob.name)
        except WeightsError as e:
            blob.unlink(missing_ok=True)
            Path(path).unlink(missing_ok=True)
            raise WeightsError(f"{repo_id}/{filename}: {e} The corrupt copy was removed from the cache; "
                               "load again to download it afresh.") from None
    return Path(path)


def _retry_once_on_5xx(download: Callable[[], str], http_error: type[Exception]) -> str:
    """``download()``, once more after a server error (5xx) on the file itself (huggingface_hub retries only its
    metadata request)."""
    try:
        return download()
    except http_error as e:
        response = getattr(e, "response", None)
        if response is None or response.status_code < 500:
            raise
        time.sleep(RETRY_BACKOFF)
        return download()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _sweep_incomplete(cache_dir: Path, repo_id: str) -> None:
    """Remove the ``*.incomplete`` files that killed downloads left in the repo's blob folder: those whose download
    lock (huggingface_hub's ``.locks/<repo>/<etag>.lock``) nobody holds."""
    from filelock import FileLock, Timeout

    repo_folder = "models--" + repo_id.replace("/", "--")
    for partial in (cache_dir / repo_folder / "blobs").glob("*.incomplete"):
        etag = partial.name.split(".", 1)[0]
        try:
            with FileLock(cache_dir / ".locks" / repo_folder / f"{etag}.lock", timeout=0):
                partial.unlink(missing_ok=True)
        except (Timeout, OSError):  # being downloaded right now, or not ours to remove
            pass


def snapshot(name_or_path: str | os.PathLike, *, revision: str | None = None, progress: bool = True,
             cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """A directory holding config.json + model.safetensors for a local path or a Hub repo id (``"org/name"`` or
    ``"org/name@revision"``; ``revision=`` wins over the ``@``). The other arguments are :func:`hub_file`'s.

    A name that looks like a path (``./x``, ``../x``, ``/x``, ``~/x``, more than one ``/`` before any ``@``, or a
    first folder that exists here) and is not a directory is "no such directory", never a Hub repo id; a repo id
    that the Hub does not have says it was read as one.
    """
    path = Path(name_or_path).expanduser()
    if _is_dir(path):
        return path
    name = str(name_or_path)
    if looks_local(name):
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise WeightsError(f"no such directory: {name} ({what}); weights= takes a directory holding "
                           f"{CONFIG_NAME} + {WEIGHTS_NAME}, or a Hub repo id 'org/name'")
    if not _REPO_ID.match(name):
        raise WeightsError(f"weights={name!r} is neither an existing directory nor a Hub repo id like 'org/name'")
    repo_id, _, pinned = name.partition("@")
    options = {"revision": revision or pinned or None, "progress": progress, "cache_dir": cache_dir,
               "force_download": force_download, "token": token, "local_files_only": local_files_only}
    try:
        hub_file(repo_id, CONFIG_NAME, **options)
        return hub_file(repo_id, WEIGHTS_NAME, **options).parent
    except HubUnavailable as e:
        raise type(e)(f"{e} ({name!r} was read as a Hub repo id: there is no directory of that name here)") from None


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where the path cannot be looked at (a working directory this user may not read: a
    repo id is then a repo id, not a permission error)."""
    try:
        return path.is_dir()
    except PermissionError:
        return False


def looks_local(name: str) -> bool:
    """Whether ``weights=name`` names a local path rather than a Hub repo id ``org/name[@revision]``."""
    stem = name.partition("@")[0]
    separators = [s for s in (os.sep, os.altsep) if s and s != "/"]  # "\\" on Windows
    first = stem.split("/", 1)[0]
    return (name.startswith(("~", ".")) or os.path.isabs(name) or stem.count("/") > 1
            or any(s in stem for s in separators)
            or ("/" in stem and first not in ("", ".") and _is_dir(Path(first))))


def download_url(url: str, destination: str | os.PathLike, *, progress: bool = True,
                 timeout: float | None = None) -> Path:
    """Download ``url`` to ``destination`` through ``destination.partial``, moved into place only when complete.

    Connect and read timeouts (``timeout``, default ``HF_HUB_DOWNLOAD_TIMEOUT`` or 10 s: a server that accepts and
    never answers is given up), a body shorter or longer than its Content-Length is refused, an HTML page served
    with status 200 (a login or error page) is refused, and a 5xx, a dropped connection or a stall is retried
    :data:`DOWNLOAD_ATTEMPTS` − 1 times with exponential backoff. A host that cannot be connected to fails at once
    (:class:`NetworkUnreachable`). The partial file is removed however the download ends.
    """
    import httpx2

    destination = Path(destination)
    partial = destination.with_name(destination.name + ".partial")
    timeout = timeout or float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10)
    failure = ""
    try:
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BACKOFF * 2 ** (attempt - 1))
            try:
                _fetch(url, partial, timeout, progress)
                os.replace(partial, destination)
                return destination
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as e:
                host = urlparse(url).netloc
                raise NetworkUnreachable(f"cannot reach {host} ({_first_line(e)}): the network is down or "
                                         "blocked") from None
            except (httpx2.TransportError, _Incomplete) as e:  # dropped, stalled, cut short: worth another try
                failure = _first_line(e) if str(e) else type(e).__name__
            except httpx2.HTTPStatusError as e:
                failure = f"HTTP {e.response.status_code}"
                if e.response.status_code < 500:
                    break
    finally:
        partial.unlink(missing_ok=True)
    raise WeightsError(f"could not download {url}: {failure}")


class _Incomplete(Exception):
    """A body whose length differs from its Content-Length."""


def _fetch(url: str, partial: Path, timeout: float, progress: bool) -> None:
    import httpx2

    # identity: the Content-Length is then the file's length, and the bytes written are the file's bytes
    with httpx2.stream("GET", url, headers={"Accept-Encoding": "identity"}, timeout=httpx2.Timeout(timeout),
                       follow_redirects=True) as response:
        response.raise_for_status()
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise WeightsError(f"could not download {url}: the server sent an HTML page (status "
                               f"{response.status_code}), not the file — a login, error or moved page")
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced is not None else None
        received = 0
        with open(partial, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                            desc=Path(urlparse(url).path).name, disable=not progress) as bar:
            for chunk in response.iter_raw(_HASH_CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise _Incomplete(f"received {received} of the {total} bytes announced")


# ------------------------------------------------------------------------------------------ upload
def upload_folder(repo_id: str, folder: str | os.PathLike, *, private: bool = False, token: str | None = None,
                  commit_message: str = "Upload speechzoo model") -> str:
    """Create the Hub model repo ``repo_id`` if needed and upload the files of ``folder`` to it; returns the
    commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return str(api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message))

"""The Hugging Face Hub client: file names, SHA-256 checks, download, snapshot and upload.

This module knows files, not models: :mod:`zoo.modeling` builds models from the directories it returns and
:mod:`zoo.download` adds the registry's releases on top. Every downloaded LFS file is checked against the SHA-256
that the Hub stores it under, so a truncated or tampered copy in the cache is reported (and removed) instead of used.
``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply as in ``huggingface_hub``, read at
each call so that setting them after import works.

Example::

    >>> import tempfile; from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "x.bin"; _ = p.write_bytes(b"speech")
    >>> sha256_of(p)[:12]
    '05fb617ad543'
    >>> verify_sha256(p, "05fb617a")   # a prefix, as torch.hub file names carry, is enough
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

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


class HubUnavailable(WeightsError):
    """The Hub has no such repo, revision or file, or cannot be reached (and the file is not cached)."""


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
    ``huggingface_hub.hf_hub_download``; ``HF_HUB_OFFLINE`` implies ``local_files_only``.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or hf_home() / "hub"
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                               endpoint=os.environ.get("HF_ENDPOINT") or None, force_download=force_download,
                               token=token, local_files_only=local_files_only or env_flag("HF_HUB_OFFLINE"),
                               library_name="speechzoo", tqdm_class=None if progress else _SilentTqdm)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        # EntryNotFoundError covers "offline or unreachable, and not in the cache" too
        raise HubUnavailable(f"{repo_id}@{revision or 'main'}/{filename} is not available: {e}") from e
    except OSError as e:  # a broken transfer: huggingface_hub's size consistency check, HTTP 5xx, ...
        raise WeightsError(f"downloading {repo_id}/{filename} failed ({e}); nothing was loaded. "
                           "Retry; if it persists, the mirror is broken.") from e
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


def snapshot(name_or_path: str | os.PathLike, *, revision: str | None = None, progress: bool = True,
             cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """A directory holding config.json + model.safetensors for a local path or a Hub repo id (``"org/name"`` or
    ``"org/name@revision"``; ``revision=`` wins over the ``@``). The other arguments are :func:`hub_file`'s."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if not _REPO_ID.match(name):
        raise WeightsError(f"weights={name!r} is neither an existing directory nor a Hub repo id like 'org/name'")
    repo_id, _, pinned = name.partition("@")
    options = {"revision": revision or pinned or None, "progress": progress, "cache_dir": cache_dir,
               "force_download": force_download, "token": token, "local_files_only": local_files_only}
    hub_file(repo_id, CONFIG_NAME, **options)
    return hub_file(repo_id, WEIGHTS_NAME, **options).parent


# ------------------------------------------------------------------------------------------ upload
def upload_folder(repo_id: str, folder: str | os.PathLike, *, private: bool = False, token: str | None = None,
                  commit_message: str = "Upload speechzoo model") -> str:
    """Create the Hub model repo ``repo_id`` if needed and upload the files of ``folder`` to it; returns the
    commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return str(api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message))

"""Where weights come from: a local directory, a Hub repo, or the original release converted on the fly.

Resolution order for a registered weight set (:func:`load`, then :func:`load_release`):

1. ``weights=`` given: a local directory holding config.json + model.safetensors, or a Hub repo id
   (``"org/name"`` or ``"org/name@revision"``);
2. what is already cached, without asking the network: the registry's Hub repo in the Hub cache, else the converted
   original release in the speechzoo cache (both verified);
3. the registry's Hub repo at its pinned revision, through ``huggingface_hub`` (so ``HF_ENDPOINT``, ``HF_HOME``,
   ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and the shared cache all apply) — asked only where a mirror exists: the
   entry is marked ``mirrored`` in the registry, or ``HF_ENDPOINT`` names a private Hub or mirror;
4. the ORIGINAL release: downloaded (:func:`zoo.hub.download_url`: timeouts, retries, length check), checksum-
   verified, read with ``torch.load(weights_only=True)`` and an allowlist, converted by ``zoo.formats.<converter>``
   and cached as safetensors under ``$HF_HOME/speechzoo``.

The conversion cache (``$HF_HOME/speechzoo``)::

    originals/<hash of URL>/<file>           downloaded release files (kept: a reconversion needs no download)
    converted/<name>/<key>/                   config.json, model.safetensors, manifest.json (written last)
    .locks/                                   file locks: one process downloads or converts, the others wait

``key`` (:func:`release_key`) hashes what the folder was made from — the release's URLs and published checksums,
the converter, its options and its code — so a registry entry that points at a new release, or a changed
converter, converts again instead of reusing stale weights. A folder is written as ``.tmp-<key>-*`` and renamed
into place complete, its ``manifest.json`` (the SHA-256 of each file, of each downloaded original, and whether the
authors published a checksum) written last and atomically; a folder whose manifest is missing, unreadable or does
not match its files is "not converted yet" and is made again. Files honour the umask, so a shared ``HF_HOME``
works for every user who may write it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, TypeVar

import torch

from .errors import WeightsError
from .hub import (
    CONFIG_NAME,
    DEFAULT_ENDPOINT,
    WEIGHTS_NAME,
    HubUnavailable,
    download_url,
    endpoint,
    ensure_writable,
    env_flag,
    hf_home,
    sha256_of,
    snapshot,
    verify_md5,
    verify_sha256,
)
from .modeling import DType, PretrainedModel, dtype_alias, resolve_dtype
from .registry import SourceFile, Weights, find

M = TypeVar("M", bound=PretrainedModel)
T = TypeVar("T", bound=torch.nn.Module)

#: The last file written into a converted folder: what it was made from and the SHA-256 of each file.
MANIFEST = "manifest.json"
#: Bumped when the layout of the conversion cache or its manifest changes.
CACHE_FORMAT = 1


def speechzoo_cache() -> Path:
    """Where converted original releases are cached (``$HF_HOME/speechzoo``)."""
    return hf_home() / "speechzoo"


# ------------------------------------------------------------------------------------------ cache keys
@functools.cache  # the code does not change while the process runs: read it once, not at every load
def converter_version(converter: str) -> str:
    """A digest of the code of ``zoo.formats.<converter>``: a changed converter makes other weights."""
    spec = importlib.util.find_spec(f"zoo.formats.{converter}")
    if spec is None or spec.origin is None:
        raise WeightsError(f"no converter zoo.formats.{converter}")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:12]


def release_key(weights: Weights) -> str:
    """What a converted folder is made from, hashed: URLs, published checksums, converter, its options and code."""
    made_from = {"format": CACHE_FORMAT, "converter": weights.converter,
                 "converter_version": converter_version(weights.converter),
                 "converter_options": weights.converter_options,
                 "sources": [[s.url, s.sha256, s.md5] for s in weights.source_files]}
    return hashlib.sha256(json.dumps(made_from, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ originals
def original_files(weights: Weights, *, progress: bool = True) -> list[Path]:
    """The original release files, downloaded once per cache (a file lock: other processes wait) and verified
    against the checksum the release published; returns their local paths."""
    from filelock import FileLock

    paths = []
    for source in weights.source_files:
        # releases share file names (g_00500000, config.json): one folder per URL keeps them apart
        url_hash = hashlib.sha256(source.url.encode()).hexdigest()[:16]
        folder = speechzoo_cache() / "originals" / url_hash
        dst = folder / Path(source.url).name
        ensure_writable(folder)
        with _lock(FileLock, f"originals-{url_hash}"):
            _sweep(folder, f"{dst.name}.partial")
            if dst.is_file():
                try:
                    _verify(source, dst)
                except WeightsError:  # damaged since it was downloaded: download it again
                    dst.unlink()
            if not dst.is_file():
                if env_flag("HF_HUB_OFFLINE"):
                    raise WeightsError(f"{source.url} is not cached and HF_HUB_OFFLINE is set")
                download_url(source.url, dst, progress=progress)
                _share(dst)
                try:
                    _verify(source, dst)
                except WeightsError as e:
                    dst.unlink()
                    raise WeightsError(f"{e} The file was removed; load again to download it afresh.") from None
        paths.append(dst)
    return paths


def _verify(source: SourceFile, path: Path) -> None:
    """Check ``path`` against the checksum its release published, if it published one."""
    if source.sha256 is not None:
        verify_sha256(path, source.sha256)
    elif source.md5 is not None:
        verify_md5(path, source.md5)


# ------------------------------------------------------------------------------------------ conversion cache
def cached_conversion(weights: Weights) -> Path | None:
    """The converted folder of ``weights`` if it is complete and verified, else None (nothing is written)."""
    directory = speechzoo_cache() / "converted" / weights.name / release_key(weights)
    return directory if _verified(directory) else None


def converted_original(weights: Weights, *, progress: bool = True) -> Path:
    """Convert the original release of ``weights`` once per cache and return the folder (config.json +
    model.safetensors + manifest.json). Processes that ask at once wait for the one that converts."""
    from filelock import FileLock

    key = release_key(weights)
    root = speechzoo_cache() / "converted" / weights.name
    directory = root / key
    if _verified(directory):
        return directory
    ensure_writable(root)
    with _lock(FileLock, f"converted-{weights.name}-{key}"):
        if _verified(directory):  # another process converted it while this one waited
            return directory
        _sweep(root, f".tmp-{key}-*")
        shutil.rmtree(directory, ignore_errors=True)  # incomplete, unreadable or mismatched: made again
        originals = original_files(weights, progress=progress)
        try:
            model = importlib.import_module(f"zoo.formats.{weights.converter}").convert(
                originals, **weights.converter_options)
        except Exception as e:  # any failure of a reader on a downloaded file: that file is not kept
            for path in originals:
                path.unlink(missing_ok=True)
            raise WeightsError(f"the original release of {weights.name} could not be converted "
                               f"({type(e).__name__}: {e}); the downloaded files were removed, so the next load "
                               "downloads them again") from e
        sources = [{"url": s.url, "published_sha256": s.sha256, "published_md5": s.md5, "sha256": sha256_of(p)}
                   for s, p in zip(weights.source_files, originals)]
        for source in sources:
            if source["published_sha256"] is None and source["published_md5"] is None:
                # once, when converted: later loads read the manifest's digest of what was downloaded
                warnings.warn(f"{source['url']} has no published checksum: its integrity is not verified (its "
                              f"SHA-256 {source['sha256']} is recorded in the cache manifest)", stacklevel=3)
        _write_folder(model, directory, {
            "format": CACHE_FORMAT, "name": weights.name, "key": key, "converter": weights.converter,
            "converter_version": converter_version(weights.converter),
            "converter_options": weights.converter_options, "sources": sources,
            "verified": all(s["published_sha256"] or s["published_md5"] for s in sources)})
    for stale in root.iterdir():  # folders of releases the registry no longer points at
        if stale.is_dir() and not stale.name.startswith(".") and stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    return directory


def manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a converted folder (raises ``OSError`` or ``ValueError`` if missing or unreadable)."""
    data = json.loads((Path(directory) / MANIFEST).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} is not a JSON object")
    return data


def _verified(directory: Path) -> bool:
    """Whether ``directory`` is a complete converted folder: its manifest reads, names this folder's key, and every
    file it lists has the SHA-256 it records."""
    try:
        data = manifest(directory)
        files = data["files"]
        return (data.get("format") == CACHE_FORMAT and data.get("key") == directory.name
                and set(files) == {CONFIG_NAME, WEIGHTS_NAME}
                and all(sha256_of(directory / name) == digest for name, digest in files.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_folder(model: PretrainedModel, directory: Path, made_from: dict[str, Any]) -> None:
    """Save ``model`` into a temporary folder beside ``directory``, write the manifest last, and rename it into
    place: a kill at any moment leaves either no folder or a complete one."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=directory.parent))
    try:
        model.save_pretrained(tmp)
        files = {name: sha256_of(tmp / name) for name in (CONFIG_NAME, WEIGHTS_NAME)}
        partial = tmp / f".{MANIFEST}.partial"
        partial.write_text(json.dumps({**made_from, "files": files}, indent=2, default=str) + "\n")
        os.replace(partial, tmp / MANIFEST)
        for path in (tmp, *tmp.iterdir()):
            _share(path)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _share(path: Path) -> None:
    """Give ``path`` the permissions the umask grants (mkdtemp and some writers create 0700 / 0600)."""
    path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (os.umask sets it to read it, which
    would race with threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _sweep(folder: Path, pattern: str) -> None:
    """Remove what killed runs left (``pattern``); called under the lock that every writer of those holds."""
    for leftover in folder.glob(pattern):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _lock(file_lock: type, name: str):
    """The file lock ``name`` of the cache, shared by the processes of every user of it (mode per umask)."""
    locks = ensure_writable(speechzoo_cache() / ".locks")
    return file_lock(locks / f"{name}.lock", mode=0o666 & ~_umask())


# ------------------------------------------------------------------------------------------ entry points
def load(cls: type[M], entry_point: str, weights: str | os.PathLike | None = None, *,
         map_location: str | torch.device = "cpu", progress: bool = True, dtype: DType | None = None,
         torch_dtype: DType | None = None, **selection) -> M:
    """The model at ``weights`` if given; otherwise the release that ``entry_point(**selection)`` selects in the
    registry (an unreleased selection raises, listing the released ones), through :func:`load_release`.
    ``dtype`` (or ``torch_dtype``) casts it, e.g. to ``torch.bfloat16``; the parts kept in float32
    (:mod:`zoo.nn.precision`) stay float32."""
    dtype = dtype_alias(dtype, torch_dtype)
    if weights is not None:
        return cls.from_pretrained(weights, map_location=map_location, progress=progress, dtype=dtype)
    return load_release(cls, find(entry_point, **selection), map_location=map_location, progress=progress,
                        dtype=dtype)


def cast(module: T, dtype: DType | None = None, torch_dtype: DType | None = None) -> T:
    """``module`` cast to ``dtype`` (or ``torch_dtype``; None or "auto": as it is), for the entry points that build
    a model rather than load one; the parts kept in float32 (:mod:`zoo.nn.precision`) stay float32."""
    resolved = resolve_dtype(dtype_alias(dtype, torch_dtype), {})
    return module if resolved is None else module.to(resolved)


def load_release(cls: type[M], weights_entry: Weights, *, map_location: str | torch.device = "cpu",
                 progress: bool = True, dtype: DType | None = None) -> M:
    """A registered release: what is cached (Hub mirror, converted original), else the Hub mirror, else the
    original release, converted; in ``dtype`` if given."""
    directory = cached_release(weights_entry)
    if directory is None:
        directory = fetch_release(weights_entry, progress=progress)
    return cls.from_directory(directory, map_location=map_location, dtype=dtype)


def ask_hub(weights: Weights) -> bool:
    """Whether the registry's Hub repo of ``weights`` may exist: marked ``mirrored``, or ``HF_ENDPOINT`` names a
    private Hub or mirror (where a maintainer may have uploaded what the public Hub does not have yet)."""
    return weights.mirrored or endpoint() != DEFAULT_ENDPOINT


def cached_release(weights: Weights) -> Path | None:
    """The folder of ``weights`` already in a cache and verified — the Hub mirror's, else the converted original —
    found without any network request; None if neither is."""
    if ask_hub(weights):
        try:
            return snapshot(weights.repo_id, revision=weights.revision, local_files_only=True)
        except WeightsError:  # not cached, or a corrupt copy (removed by hub_file): look further
            pass
    return cached_conversion(weights)


def fetch_release(weights: Weights, *, progress: bool = True) -> Path:
    """Download ``weights``: the Hub mirror where one may exist, else the original release, converted."""
    if env_flag("HF_HUB_OFFLINE"):
        raise WeightsError(f"{weights.name} is not in the cache ({hf_home()}) and HF_HUB_OFFLINE is set: unset it "
                           f"to download it, or {_by_hand(weights)}")
    hub_error = None
    if ask_hub(weights):
        # Only an unavailable mirror falls back; a corrupt or truncated download raises and is never papered over.
        try:
            return snapshot(weights.repo_id, revision=weights.revision, progress=progress)
        except HubUnavailable as e:
            hub_error = e
    try:
        return converted_original(weights, progress=progress)
    except WeightsError as e:
        tried = f"{hub_error}; and the original release failed: " if hub_error else ""
        raise WeightsError(f"could not load {weights.name}: {tried}{e}. To supply the weights by hand, "
                           f"{_by_hand(weights)}") from None


def _by_hand(weights: Weights) -> str:
    """How to supply ``weights`` without this loader: download, convert, pass the folder."""
    urls = " ".join(s.url for s in weights.source_files)
    return (f"download {urls}, run `python -m conversion {weights.converter} FILE... --out DIR` and pass "
            "weights=DIR (CLI: --weights DIR)")

"""GSLM's k-means files: ``km.bin``, a joblib pickle of a fitted scikit-learn ``MiniBatchKMeans`` (or ``KMeans``).

``cluster_kmeans.py`` saves the estimator with ``joblib.dump``. That is a pickle stream in which each numpy array
is replaced by a ``joblib.numpy_pickle.NumpyArrayWrapper`` (subclass, shape, order, dtype and, since joblib 1.2,
an alignment) whose raw bytes follow the wrapper's BUILD opcode in the file: one padding-length byte, that many
pad bytes, then the data. Object arrays are a nested pickle at the same place.

This reader needs neither scikit-learn nor joblib: it unpickles with :class:`RestrictedUnpickler`, which builds
only the classes of :data:`ALLOWED` — stand-ins for the estimator classes (under the module paths of every
scikit-learn version: ``sklearn.cluster._kmeans`` since 0.22, ``sklearn.cluster.k_means_`` before) that just keep
their state dict, the array wrapper, numpy's dtype, array and scalar constructors as plain pickle writes them, and
nothing else. Any other global refuses the file before anything is built or called, so a km.bin can never run
code. ``cluster_centers_`` is kept bit for bit.

Compressed dumps (``joblib.dump(..., compress=...)`` with zlib, gzip, bz2, lzma or xz) are decompressed first.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConversionError
from ..models.codebook import Codebook

#: ``(magic prefix, decompress)`` of the compressors ``joblib.dump(compress=...)`` writes.
_COMPRESSED = ((b"\x1f\x8b", gzip.decompress), (b"BZh", bz2.decompress), (b"\xfd7zXZ", lzma.decompress),
               (b"\x5d\x00\x00", lzma.decompress), (b"x", zlib.decompress))


class _Estimator:
    """Stand-in for a scikit-learn estimator: keeps the pickled state dict (``cluster_centers_``...)."""

    cls_name = "estimator"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ConversionError(f"the pickled {self.cls_name} has a {type(state).__name__} state, not a dict")
        self.state = state


def _estimator(name: str) -> type[_Estimator]:
    return type(name, (_Estimator,), {"cls_name": name})


class _ArrayWrapper:
    """Stand-in for ``joblib.numpy_pickle.NumpyArrayWrapper``: its state says how to read the array that follows."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"subclass", "shape", "order", "dtype"} <= set(state):
            raise ConversionError("a joblib array wrapper without subclass/shape/order/dtype: not a joblib file")
        self.state = state


class _DType:
    """Stand-in for a pickled ``numpy.dtype(spec, align, copy)``; BUILD then sets its byte order."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str):
            raise ConversionError(f"a numpy dtype pickled from {type(spec).__name__}, not a type code")
        self.spec, self.byteorder, self.fields = spec, "|", None

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in "<>|=":
            raise ConversionError(f"unreadable numpy dtype state {state!r:.80}")
        self.byteorder, self.fields = state[1], state[2:5]

    def resolve(self) -> np.dtype:
        if self.fields != (None, None, None) and self.fields is not None:
            raise ConversionError(f"a structured numpy dtype ({self.spec}) in a k-means file")
        try:
            dtype = np.dtype(self.spec)
        except TypeError as e:
            raise ConversionError(f"unknown numpy dtype {self.spec!r}") from e
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


class _Opaque:
    """Stand-in for a numpy random generator (``random_state`` may hold one): built from nothing, keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _NdarrayClass:
    """Stand-in for the class ``numpy.ndarray`` itself (an argument of the constructors below)."""


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _PlainArray:
    """``numpy.core.multiarray._reconstruct`` as plain pickle writes arrays: an empty array, then BUILD."""
    if subtype is not _NdarrayClass:
        raise ConversionError("a pickled array of a numpy.ndarray subclass: not a k-means file")
    return _PlainArray()


class _PlainArray:
    """A numpy array pickled by plain pickle: BUILD gives ``(version, shape, dtype, is_fortran, data)``."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[2], _DType):
            raise ConversionError(f"unreadable pickled numpy array state {state!r:.80}")
        _, shape, dtype, fortran, data = state
        dtype = dtype.resolve()
        order = "F" if fortran else "C"
        if dtype.hasobject:  # a list of already unpickled (so allowlisted) objects
            self.array = np.array(data, dtype=object).reshape(shape, order=order)
        else:
            self.array = np.frombuffer(bytes(data), dtype=dtype).reshape(shape, order=order).copy()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer``: how pickle protocol 5 writes a contiguous array."""
    if not isinstance(dtype, _DType):
        raise ConversionError("a protocol-5 numpy array without a dtype")
    return np.frombuffer(bytes(buffer), dtype=dtype.resolve()).reshape(shape, order=order).copy()


def _scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a pickled numpy scalar (``inertia_`` is one)."""
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise ConversionError("a pickled numpy scalar without dtype and bytes")
    dtype = dtype.resolve()
    if dtype.hasobject:
        raise ConversionError("a pickled numpy object scalar in a k-means file")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol-2 pickles written by Python 3 store bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ConversionError("a pickled _codecs.encode call that does not decode bytes")
    return text.encode("latin1")


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor(cls, object, None)``: how protocols 0 and 1 create an object without __init__."""
    if not (isinstance(cls, type) and issubclass(cls, _Estimator | _ArrayWrapper)) or base is not object or state:
        raise ConversionError("a protocol-0/1 object constructor outside the allowlist")
    return cls.__new__(cls)


_ESTIMATORS = {name: _estimator(name) for name in ("MiniBatchKMeans", "KMeans")}
_NUMPY_CORE = ("numpy.core", "numpy._core")

#: ``(module, name)`` a km.bin may name → what is built instead. Everything else refuses the file.
ALLOWED: dict[tuple[str, str], Any] = {
    **{(module, name): cls for module in ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_")
       for name, cls in _ESTIMATORS.items()},
    **{(module, "NumpyArrayWrapper"): _ArrayWrapper
       for module in ("joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle")},
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _DType,
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in _NUMPY_CORE},
    **{(f"{core}.multiarray", "scalar"): _scalar for core in _NUMPY_CORE},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in _NUMPY_CORE},
    ("_codecs", "encode"): _codecs_encode,
    **{key: _Opaque for key in (("numpy.random", "__RandomState_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
                                ("numpy.random._pickle", "__bit_generator_ctor"),
                                ("numpy.random._mt19937", "MT19937"))},
    # protocols 0 and 1 (Python 2 names too, as pickle's fix_imports writes them)
    **{(module, "_reconstructor"): _copyreg_reconstructor for module in ("copyreg", "copy_reg")},
    **{(module, "object"): object for module in ("builtins", "__builtin__")},
}


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickles joblib files building only :data:`ALLOWED` stand-ins; numpy arrays come out as ``np.ndarray``.

    It is the pure-Python unpickler (whose opcode table can be extended, as joblib's own reader does) with a
    ``find_class`` that refuses every global outside the allowlist, and a BUILD that, after building a joblib
    array wrapper, reads the array bytes that follow it in the file.
    """

    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self.file_handle = file

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise ConversionError(f"the pickle names {module}.{name}, which a k-means file never holds: refused "
                                  "without running anything (a km.bin holds a scikit-learn KMeans/MiniBatchKMeans "
                                  "and numpy arrays only)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise ConversionError("the pickle refers to persistent objects: not a joblib k-means file")

    def load_build(self) -> None:
        super().load_build()
        top = self.stack[-1]
        if isinstance(top, _ArrayWrapper):
            self.stack[-1] = self._read_wrapped_array(top.state)
        elif isinstance(top, _PlainArray):
            self.stack[-1] = top.array

    dispatch[pickle.BUILD[0]] = load_build

    def _read_wrapped_array(self, state: dict) -> np.ndarray:
        if state["subclass"] is not _NdarrayClass:
            raise ConversionError("a joblib array of a numpy.ndarray subclass: not a k-means file")
        if not isinstance(state["dtype"], _DType):
            raise ConversionError("a joblib array wrapper without a numpy dtype")
        dtype, shape, order = state["dtype"].resolve(), tuple(state["shape"]), state["order"]
        if order not in ("C", "F") or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ConversionError(f"a joblib array of shape {shape} and order {order!r}")
        if dtype.hasobject:  # a nested pickle, read with the same allowlist
            nested = RestrictedUnpickler(self.file_handle)
            return np.asarray(nested.load(), dtype=object)
        if state.get("numpy_array_alignment_bytes") is not None:  # joblib >= 1.2: padding-length byte + padding
            self._read_exactly(self._read_exactly(1)[0])
        count = int(np.prod(shape, dtype=np.int64))
        data = self._read_exactly(count * dtype.itemsize)
        array = np.frombuffer(data, dtype=dtype, count=count)
        return array.reshape(shape[::-1]).T.copy() if order == "F" else array.reshape(shape).copy()

    def _read_exactly(self, n: int) -> bytes:
        data = self.file_handle.read(n)
        if len(data) != n:
            raise ConversionError(f"the file ends inside an array ({len(data)} of {n} bytes): it is truncated")
        return data


def read_joblib(path: str | Path) -> Any:
    """The object in the joblib pickle at ``path``, through :class:`RestrictedUnpickler`."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    data = path.read_bytes()
    for magic, decompress in _COMPRESSED:
        if data.startswith(magic):
            try:
                data = decompress(data)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
                raise ConversionError(f"{path} looks compressed but does not decompress ({e}): truncated?") from e
            break
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    except Exception as e:  # pickle errors come in many types; all mean "not a readable joblib pickle"
        raise ConversionError(f"cannot read {path} as a joblib pickle ({type(e).__name__}: {e}); it is truncated "
                              "or not a km.bin written by joblib.dump / pickle") from e


def cluster_centers(path: str | Path) -> np.ndarray:
    """``cluster_centers_`` ``(K, D)`` of the k-means pickled at ``path``, as stored."""
    estimator = read_joblib(path)
    if not isinstance(estimator, _Estimator):
        raise ConversionError(f"{path} holds a {type(estimator).__name__}, not a scikit-learn KMeans or "
                              "MiniBatchKMeans: is it the km.bin of cluster_kmeans.py?")
    centers = estimator.state.get("cluster_centers_")
    if centers is None:
        raise ConversionError(f"{path} holds a {estimator.cls_name} that was never fitted (no cluster_centers_)")
    if not isinstance(centers, np.ndarray) or centers.ndim != 2 or 0 in centers.shape \
            or centers.dtype.kind != "f":
        raise ConversionError(f"{path}: cluster_centers_ is not a (K, D) float matrix")
    if not np.isfinite(centers).all():
        raise ConversionError(f"{path}: cluster_centers_ holds NaN or infinity")
    return centers


def convert(paths: list[Path], *, dense_model: str | None = None, layer: int | None = None) -> Codebook:
    """A :class:`Codebook` of the ``km.bin`` at ``paths[0]``; ``dense_model`` and ``layer`` are metadata (the
    registry names the dense model whose features it clusters)."""
    if len(paths) != 1:
        raise ConversionError("kmeans conversion takes one file, the km.bin of cluster_kmeans.py")
    centers = cluster_centers(paths[0])
    if centers.dtype.itemsize != 4:
        # sklearn itself cannot predict the float32 features GSLM's readers give with non-float32 centres
        warnings.warn(f"{paths[0]}: cluster_centers_ are {centers.dtype}; stored as float32", stacklevel=2)
    tensor = torch.from_numpy(np.ascontiguousarray(centers, dtype=np.float32))  # native byte order
    return Codebook.from_tensor(tensor, layer=layer, dense_model=dense_model)

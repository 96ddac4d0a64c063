"""Recognise checkpoint files by their bytes, and read their headers without the data.

Every reader here validates what a file declares against the bytes it holds
before anything is allocated: a header that promises a 60000 x 60000 layer in
a 1 KB file is an error, not a 14 GB allocation. ``read_safetensors_header``
and ``read_torch_header`` are the only places that parse a checkpoint's
structure; everything else (``info``, ``analyze``, ``load``) goes through them.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inspector.checks import is_int, printable
from inspector.errors import InspectorError

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit
# A state dict's pickle holds names, shapes and strides: a few hundred bytes per tensor. Its size is
# bounded by the storages the file holds (each a zip member), so that a small file cannot inflate into
# a pickle that takes minutes to walk; every opcode costs the weights-only unpickler about a microsecond.
_PICKLE_BASE = 1024 * 1024  # extras beside the tensors (a training checkpoint's epoch, config, history)
_PICKLE_PER_STORAGE = 1024
_MAX_PICKLE = 32 * 1024 * 1024  # whatever the number of storages
_PICKLE_SECONDS = 20.0  # a backstop on the header read's time: a real header takes well under a second
#: no dimension of a tensor may exceed this: larger than any layer (2^31 rows of a matrix), and the bound
#: that keeps a zero-size tensor's other dimensions from sizing anything (a (0, 10^12) tensor holds nothing)
MAX_DIM = 2**31
#: nor may the product of its non-zero dimensions exceed this (so strides and byte counts stay in int64)
MAX_SPAN = 2**56
MAX_NDIM = 64  # numpy's limit: no tensor of a model has more dimensions
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's pre-1.6 (non-zip) format starts with this number

# safetensors dtype names -> torch dtypes; types this torch lacks are left out (and refused)
_ST_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
        "C64": torch.complex64,
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
        "F8_E5M2": getattr(torch, "float8_e5m2", None),
        "U16": getattr(torch, "uint16", None),
        "U32": getattr(torch, "uint32", None),
        "U64": getattr(torch, "uint64", None),
    }.items()
    if dtype is not None
}


def check_file(path: Path) -> int:
    """The size of ``path``, after checking it is an existing, non-empty regular file."""
    if not path.exists():
        raise InspectorError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InspectorError(f"{path} is a directory without a {INDEX_NAME}; give the checkpoint file inside it")
    size = path.stat().st_size
    if size == 0:
        raise InspectorError(f"{path}: the file is empty; re-export or re-download it")
    return size


def check_shape(path: Path, name: str, shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, after checking every dimension is an integer in ``[0, MAX_DIM]``.

    A file's bytes bound the elements of a tensor that has some, not the dimensions of one that
    has none: ``(0, 10**12)`` holds no byte and would size a 4 TB array by its second dimension.
    """
    try:
        dims = tuple(shape)
    except TypeError:
        dims = (shape,)
    span = 1
    for d in dims[: MAX_NDIM + 1]:
        span *= d if is_int(d) and 0 < d <= MAX_DIM else 1
    if len(dims) > MAX_NDIM or not all(is_int(d) and 0 <= d <= MAX_DIM for d in dims) or span > MAX_SPAN:
        shown = printable(str(list(dims[:8])))[:80] + (f" ({len(dims)} dimensions)" if len(dims) > 8 else "")
        raise InspectorError(
            f"{path}: tensor {printable(str(name))[:80]!r} declares shape {shown}: every dimension must be an "
            f"integer from 0 to 2^31 (at most {MAX_NDIM} of them), and their product (zeros aside) below 2^56; "
            "the file is crafted or corrupt"
        )
    return tuple(int(d) for d in dims)


def crc_error(path: Path, member: str) -> InspectorError:
    """The one line for a zip member whose bytes do not match the CRC-32 its archive records."""
    return InspectorError(
        f"{path}: member {printable(member)[:120]} fails its CRC check: the file is corrupt; re-download or re-save it"
    )


_BAD_CRC = "Bad CRC-32 for file "  # zipfile's message when a member read to its end does not match its CRC


def zip_read_error(path: Path, exc: BaseException) -> InspectorError | None:
    """:func:`crc_error` for ``zipfile``'s CRC failure (``BadZipFile("Bad CRC-32 for file 'x'")``, raised
    when a member is read to its end through ``ZipFile.open``/``read``); ``None`` for any other error."""
    text = str(exc)
    if isinstance(exc, zipfile.BadZipFile) and text.startswith(_BAD_CRC):
        return crc_error(path, text[len(_BAD_CRC) :].strip("'\""))
    return None


def check_zip_crcs(path: Path, archive: zipfile.ZipFile) -> None:
    """Read every member of ``archive`` to its end, a chunk at a time (no member held whole), so that
    ``zipfile`` checks each one's CRC-32: for readers that hand the file to a library (``torch.load``)
    which does not check it."""
    for info in archive.infolist():
        if info.is_dir():
            continue
        try:
            with archive.open(info) as fh:
                while fh.read(1 << 20):
                    pass
        except zipfile.BadZipFile as exc:
            raise (zip_read_error(path, exc) or crc_error(path, info.filename)) from None


def zip_magic(head: bytes) -> bool:
    """Whether ``head`` starts a zip archive (``torch.save``'s format, Keras, skops)."""
    return head.startswith(_ZIP_MAGIC)


def safetensors_magic(head: bytes) -> bool:
    """Whether ``head`` starts a safetensors file: an 8-byte little-endian header length, then ``{``.

    That length can begin with any byte, 0x80 included (a 640-byte header does), so this test
    comes before the pickle test, and the reader validates the rest."""
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _MAX_HEADER


def pickle_magic(head: bytes) -> bool:
    """Whether ``head`` starts a pickle of protocol >= 2 (``torch.save``'s legacy, pre-1.6 format)."""
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


INDEX_NAME = "model.safetensors.index.json"  # Hugging Face's name for a sharded safetensors checkpoint's index


def is_sharded_index(path: Path) -> bool:
    """Whether ``path`` is a JSON object with a ``weight_map`` (a sharded checkpoint's index), from its bytes."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_HEADER:
            return False
        with path.open("rb") as fh:
            if fh.read(64).lstrip()[:1] != b"{":
                return False
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "weight_map" in doc


def sharded_index_path(path: Path) -> Path | None:
    """The index of the sharded checkpoint ``path`` names (a folder holding ``model.safetensors.index.json``,
    or the index file itself: named ``*.safetensors.index.json``, or any JSON object with a ``weight_map``),
    or ``None`` when ``path`` is not one."""
    if path.is_dir():
        return path / INDEX_NAME if (path / INDEX_NAME).is_file() else None
    if path.name.lower().endswith(".safetensors.index.json") and path.is_file():
        return path  # by its name, so that a damaged index is reported as one
    return path if is_sharded_index(path) else None


@dataclass(frozen=True)
class ShardedIndex:
    """A validated sharded-checkpoint index: each tensor's shard, in the index's order.

    ``weight_map``: tensor name -> shard file (inside the index's folder, present on disk);
    ``metadata``: the index's own ``metadata`` object (e.g. ``total_size``).
    """

    path: Path
    weight_map: dict[str, Path]
    metadata: dict[str, Any]

    @property
    def shards(self) -> tuple[Path, ...]:
        """The shard files, each once, in the order the index first names them."""
        return tuple(dict.fromkeys(self.weight_map.values()))


def read_sharded_index(path: Path) -> ShardedIndex:
    """Parse and validate a ``model.safetensors.index.json``: a JSON object whose ``weight_map`` maps
    each tensor name once to a shard file by a plain relative name inside the index's folder (no
    ``..``, no absolute path, no link out of the folder), every shard a safetensors file that exists.
    That each tensor is in its shard is checked when the shards' headers are read
    (:func:`inspector.checkpoints.read_header`)."""
    check_file(path)

    def bad(what: str) -> InspectorError:
        return InspectorError(f"{path}: corrupt sharded-checkpoint index ({what}); re-export or re-download it")

    if path.stat().st_size > _MAX_HEADER:
        raise bad(f"larger than {_MAX_HEADER} bytes")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise bad(f"not valid JSON: {printable(reason)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise bad("no weight_map object")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise bad("metadata is not an object")
    if not doc["weight_map"]:
        raise bad("the weight_map is empty")
    folder = path.parent.resolve()
    weight_map: dict[str, Path] = {}
    checked: dict[str, Path] = {}
    for name, shard in doc["weight_map"].items():
        if not isinstance(shard, str) or not shard:
            raise bad(f"tensor {printable(name)[:80]!r} maps to {printable(repr(shard))[:40]}, not a file name")
        if shard not in checked:
            relative = Path(shard)
            if relative.is_absolute() or ".." in relative.parts or "\\" in shard or ":" in shard:
                raise bad(f"shard {printable(shard)[:80]!r} is not a file inside the index's folder")
            if not shard.lower().endswith(".safetensors"):
                raise InspectorError(
                    f"{path}: shard {printable(shard)[:80]!r} is not a .safetensors file; only sharded "
                    "safetensors checkpoints are read (convert the shards, or pass one file)"
                )
            resolved = (folder / relative).resolve()
            if not resolved.is_relative_to(folder):
                raise bad(f"shard {printable(shard)[:80]!r} leads out of the index's folder")
            if not resolved.is_file():
                raise InspectorError(
                    f"{path}: shard {printable(shard)[:80]!r} named in the index is missing; "
                    "download every shard into the index's folder"
                )
            checked[shard] = path.parent / relative
        weight_map[name] = checked[shard]
    return ShardedIndex(path, weight_map, dict(metadata))


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as its file declares it; ``bytes`` is checked against the bytes present."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int
    tied_to: str | None = None  # an earlier tensor viewing the same stored bytes: counted there, not here

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def shared_storage(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{later name: first name}`` for tensors whose bytes overlap an earlier tensor's in one storage.

    ``torch.save`` keeps tied weights (``b.weight = a.weight``, or a transposed view of it)
    as one storage; counting each name would count those parameters twice. Works on
    ``meta`` tensors from :func:`read_torch_header` as well as on loaded ones.
    """
    spans: dict[int, list[tuple[int, int, str]]] = {}
    tied: dict[str, str] = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.numel() == 0 or t.layout != torch.strided:
            continue
        itemsize = t.element_size()
        begin = t.storage_offset() * itemsize
        end = begin + (1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))) * itemsize
        owners = spans.setdefault(t.untyped_storage()._cdata, [])
        first = next((owner for b, e, owner in owners if b < end and begin < e), None)
        if first is not None:
            tied[name] = tied.get(first, first)
        else:
            owners.append((int(begin), int(end), name))  # int already; the stubs say int | SymInt
    return tied


def is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == _ZIP_MAGIC


# --------------------------------------------------------------------------- #
# safetensors
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SafetensorsEntry:
    """One tensor of a safetensors header: its bytes are ``data[begin:end]``."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def torch_dtype(self) -> torch.dtype:
        return _ST_DTYPES[self.dtype]


@dataclass(frozen=True)
class SafetensorsHeader:
    """The JSON header, validated: ``tensors`` in file order, ``metadata`` string to string."""

    tensors: dict[str, SafetensorsEntry]
    metadata: dict[str, str]
    data_start: int


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse and validate the header only: dtypes known, shapes and offsets non-negative
    integers, each tensor's byte count equal to its shape times its dtype size, and the
    tensors tiling the data section exactly (no gap, no overlap, nothing past the end)."""
    size = check_file(path)
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise InspectorError(f"{path}: truncated safetensors file (no header); re-export it")
        (n,) = struct.unpack("<Q", prefix)
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise InspectorError(f"{path}: truncated or corrupt safetensors header; re-export the file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InspectorError(
            f"{path}: corrupt safetensors header (not valid JSON: {printable(reason)}); re-export the file"
        ) from None
    if not isinstance(header, dict):
        raise InspectorError(f"{path}: corrupt safetensors header (not a JSON object); re-export the file")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InspectorError(
            f"{path}: corrupt safetensors header (__metadata__ must map names to strings); re-export the file"
        )
    data_size = size - 8 - n
    tensors = {name: _safetensors_entry(path, name, info) for name, info in header.items()}
    declared = max((e.end for e in tensors.values()), default=0)
    if declared > data_size:
        raise InspectorError(
            f"{path}: truncated safetensors file ({size} bytes, header declares {8 + n + declared}); "
            "re-export or re-download it"
        )
    expected = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != expected:
            how = "overlaps the tensor before it" if entry.begin < expected else "leaves a gap before it"
            raise InspectorError(
                f"{path}: corrupt safetensors header (tensor {name!r} at bytes "
                f"{entry.begin}..{entry.end} {how}); re-export the file"
            )
        expected = entry.end
    if expected != data_size:
        raise InspectorError(
            f"{path}: corrupt safetensors file ({data_size - expected} bytes after the last tensor); re-export the file"
        )
    return SafetensorsHeader(tensors=tensors, metadata=dict(metadata), data_start=8 + n)


def _safetensors_entry(path: Path, name: str, info: Any) -> SafetensorsEntry:
    def bad(what: str) -> InspectorError:
        return InspectorError(f"{path}: corrupt safetensors entry {name!r} ({what}); re-export the file")

    if not isinstance(info, dict):
        raise bad("not a JSON object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
        shown = dtype[:40] if isinstance(dtype, str) else type(dtype).__name__
        raise bad(f"unknown dtype {shown!r}; known: {', '.join(_ST_DTYPES)}")
    if not isinstance(shape, list) or not all(is_int(s) and s >= 0 for s in shape):
        raise bad("shape must be a list of non-negative integers")
    check_shape(path, name, shape)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad("data_offsets must be two integers [begin, end] with 0 <= begin <= end")
    numel = 1
    for s in shape:
        numel *= s
    itemsize = _ST_DTYPES[dtype].itemsize
    if numel * itemsize != offsets[1] - offsets[0]:
        raise bad(
            f"shape {shape} of {dtype} needs {numel * itemsize} bytes, data_offsets give {offsets[1] - offsets[0]}"
        )
    return SafetensorsEntry(dtype, tuple(shape), offsets[0], offsets[1])


# --------------------------------------------------------------------------- #
# torch.save files
# --------------------------------------------------------------------------- #


class NeedsTrust(InspectorError):
    """The pickle holds Python objects beyond tensors and containers (e.g. a whole ``nn.Module``)."""


def pickle_refused(path: Path) -> NeedsTrust:
    return NeedsTrust(
        f"{path}: holds pickled Python objects (e.g. a whole nn.Module), which can run code "
        "when loaded; save model.state_dict() instead, or pass --trust-pickle "
        "(trust_pickle=True) only if you trust where the file came from"
    )


@dataclass(frozen=True)
class StoredMember:
    """An uncompressed zip member (a ``torch.save`` storage): its bytes are ``file[offset:offset + size]``,
    and ``crc`` is the CRC-32 the archive records for them."""

    name: str
    offset: int
    size: int
    crc: int


def read_torch_header(path: Path, members: dict[int, StoredMember] | None = None) -> Any:
    """Unpickle a ``torch.save`` file with every storage on the ``meta`` device: the object
    tree with its tensors' shapes, dtypes and strides, and no tensor data read or allocated.

    Uses the same weights-only unpickler as ``torch.load(weights_only=True)``: no code
    runs. With ``members``, a zip file's storages are recorded there as ``{storage._cdata: its
    zip member}``, for :func:`read_tensor_at`. Each storage's declared size is checked against the
    bytes the file holds for it (the zip directory, or the legacy format's size prefixes), and each
    tensor against its storage (see :func:`check_tensor`), so a later ``torch.load`` is bounded by the
    file. The pickle itself is bounded by the storages it can describe (``data.pkl`` at most 1 MiB
    plus 1 KiB per storage, 32 MiB in all) and its reading by time (20 s, a backstop).

    Raises:
        NeedsTrust: the pickle holds other Python objects.
        InspectorError: the file is truncated or corrupt.
    """
    size = check_file(path)
    try:
        return _read_zip_header(path, members) if is_zip(path) else _read_legacy_header(path, size)
    except InspectorError:
        raise
    except Exception as exc:  # untrusted bytes through a side-effect-free unpickler: any failure is corruption
        if "global" in str(exc).lower() and isinstance(exc, _unpickling_error()):
            raise pickle_refused(path) from None
        raise InspectorError(
            f"{path}: truncated or corrupt PyTorch file ({_reason(exc)}); re-export or re-download it"
        ) from None


def _unpickling_error() -> type[Exception]:
    import pickle

    return pickle.UnpicklingError


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cut = text.find(". ")
    return printable((text[:cut] if cut > 0 else text)[:200])


def _meta_storage(path: Path, storage_type: Any, numel: Any, available: int | None, key: str) -> Any:
    dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, "dtype", None)
    if not isinstance(dtype, torch.dtype) or not is_int(numel) or numel < 0 or numel > 2**62:
        raise InspectorError(
            f"{path}: corrupt PyTorch file (storage {key!r} is malformed); re-export or re-download it"
        )
    nbytes = numel * dtype.itemsize
    if available is not None and nbytes != available:
        raise InspectorError(
            f"{path}: corrupt PyTorch file (storage {key!r} declares {nbytes} bytes, "
            f"the file holds {available}); re-export or re-download it"
        )
    return torch.storage.TypedStorage(
        wrap_storage=torch.UntypedStorage(nbytes, device="meta"), dtype=dtype, _internal=True
    )


class _Bounded:
    """A binary file for the unpickler. ``read(n)`` never asks for more than the bytes up to ``end`` (a
    corrupt pickle length prefix would otherwise make a buffered ``read(n)`` allocate all ``n`` bytes
    before finding the file short); a pickle that runs past ``limit()`` (a position) is refused, and the
    reading stops after ``_PICKLE_SECONDS`` (checked every 65,536 reads: the unpickler reads once per
    opcode, so a pickle of a billion ``None`` would otherwise run for minutes)."""

    def __init__(self, fh: Any, end: int, path: Path, limit: Callable[[], int] | None = None) -> None:
        self._fh = fh
        self._end = end
        self._path = path
        self.limit = limit
        self._reads = 0
        self._deadline = time.monotonic() + _PICKLE_SECONDS

    def _clamp(self, n: int | None) -> int:
        self._reads += 1
        if not self._reads & 0xFFFF and self.limit is not None and time.monotonic() > self._deadline:
            raise InspectorError(
                f"{self._path}: reading the checkpoint's pickle took over {_PICKLE_SECONDS:.0f} s; "
                "the file is crafted or corrupt (re-export it with torch.save(model.state_dict(), ...))"
            )
        at = self._fh.tell()
        if self.limit is not None and n != 0 and at >= (most := self.limit()):
            raise InspectorError(
                f"{self._path}: the checkpoint's pickle runs past {most:,} bytes, more than its tensors' "
                "names and shapes need; the file is crafted or corrupt"
            )
        left = max(0, self._end - at)
        return left if n is None or n < 0 else min(n, left)

    def read(self, n: int = -1) -> bytes:
        return bytes(self._fh.read(self._clamp(n)))

    def readline(self, limit: int = -1) -> bytes:
        return bytes(self._fh.readline(self._clamp(limit)))

    def tell(self) -> int:
        return int(self._fh.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._fh.seek(offset, whence))


def _unpickler(data: Any, persistent_load: Any) -> Any:
    from torch import _weights_only_unpickler

    unpickler = _weights_only_unpickler.Unpickler(data, encoding="utf-8")
    # torch.serialization overrides it per instance the same way (the pickle protocol); its stubs declare a method
    unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
    return unpickler


def _read_zip_header(path: Path, members: dict[int, StoredMember] | None = None) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InspectorError(
            f"{path}: truncated or corrupt PyTorch file ({_reason(exc)}); re-export or re-download it"
        ) from None
    with archive:
        records = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in records if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise InspectorError(
                f"{path}: a zip file but not a PyTorch checkpoint (no data.pkl); "
                "save with torch.save(model.state_dict(), ...)"
            )
        prefix = pickles[0][: -len("data.pkl")]
        n_storages = sum(1 for name in records if name.startswith(f"{prefix}data/"))
        most = min(_MAX_PICKLE, _PICKLE_BASE + _PICKLE_PER_STORAGE * n_storages)
        if records[pickles[0]].file_size > most:
            raise InspectorError(
                f"{path}: corrupt PyTorch file (its data.pkl declares {records[pickles[0]].file_size:,} bytes "
                f"for {n_storages} storage{'s' * (n_storages != 1)}; at most {most:,} are read); "
                "the file is crafted or corrupt: re-export or re-download it"
            )
        try:
            pickled = archive.read(pickles[0])  # read to its end: zipfile checks its CRC
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, ValueError) as exc:
            raise (
                zip_read_error(path, exc)
                or InspectorError(
                    f"{path}: truncated or corrupt PyTorch file ({_reason(exc)}); re-export or re-download it"
                )
            ) from None
        storages: dict[str, Any] = {}

        def persistent_load(pid: Any) -> Any:
            if not isinstance(pid, tuple) or len(pid) != 5:
                raise InspectorError(
                    f"{path}: corrupt PyTorch file (malformed storage reference); re-export or re-download it"
                )
            _, storage_type, key, _, numel = pid
            key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
            if key not in storages:
                record = records.get(f"{prefix}data/{key}")
                if record is None or record.compress_type != zipfile.ZIP_STORED:
                    raise InspectorError(
                        f"{path}: truncated or corrupt PyTorch file (storage {key!r} "
                        "is missing); re-export or re-download it"
                    )
                storages[key] = _meta_storage(path, storage_type, numel, record.file_size, key)
                if members is not None:
                    members[storages[key]._untyped_storage._cdata] = StoredMember(
                        record.filename, _stored_data_offset(path, record), record.file_size, record.CRC
                    )
            return storages[key]

        # data.pkl was bounded by its size above; the time is bounded here
        return _unpickler(
            _Bounded(io.BytesIO(pickled), len(pickled), path, limit=lambda: len(pickled) + 1), persistent_load
        ).load()


def _stored_data_offset(path: Path, record: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip member's bytes start: after its local header (30 bytes, the
    name and the extra field, whose lengths the local header gives and may differ from the directory's)."""
    with path.open("rb") as fh:
        fh.seek(record.header_offset)
        local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise InspectorError(f"{path}: corrupt PyTorch file (bad zip entry {record.filename!r}); re-export it")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return record.header_offset + 30 + name_length + extra_length


def check_member_crc(path: Path, member: StoredMember, chunk: int = 1 << 20) -> None:
    """Read ``member``'s bytes ``chunk`` at a time and compare their CRC-32 with the archive's."""
    crc = 0
    buffer = bytearray(min(chunk, member.size))
    view = memoryview(buffer)
    with path.open("rb") as fh:
        fh.seek(member.offset)
        left = member.size
        while left:
            got = fh.readinto(view[: min(left, len(buffer))])
            if not got:
                raise InspectorError(f"{path}: truncated file (member {member.name} is cut short); re-download it")
            crc = zlib.crc32(view[:got], crc)
            left -= got
    if crc != member.crc:
        raise crc_error(path, member.name)


def read_tensor_at(
    path: Path,
    offset: int,
    dtype: torch.dtype,
    shape: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
    member: StoredMember | None = None,
) -> torch.Tensor:
    """A tensor of ``shape`` whose (strided) data starts at byte ``offset`` of ``path``, read into
    memory of its own with ``readinto``: nothing else of the file is read, and no page of the file
    stays mapped in the process (a memory map would keep every page it touched resident).

    ``stride`` (elements) defaults to contiguous; a strided tensor is read as the span it covers
    and copied contiguous. The caller has checked that the span lies inside the file. With ``member``
    (the zip member holding the data) whose bytes are exactly the span read, their CRC-32 is checked
    on the buffer itself (a member the span covers only in part is checked by the caller, in chunks).
    """
    numel = 1
    for n in shape:
        numel *= n
    if stride is None or numel == 0:
        span = numel
    else:
        span = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    buffer = bytearray(span * dtype.itemsize)
    with path.open("rb") as fh:
        fh.seek(offset)
        got = fh.readinto(buffer)
    if got != len(buffer):
        raise InspectorError(f"{path}: truncated file ({got} of {len(buffer)} bytes at {offset}); re-download it")
    if member is not None and offset == member.offset and len(buffer) == member.size:
        if zlib.crc32(buffer) != member.crc:
            raise crc_error(path, member.name)
    if not buffer:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(buffer, dtype=dtype)
    if stride is None:
        return flat.view(shape)
    tensor = flat.as_strided(shape, stride)
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def _read_legacy_header(path: Path, size: int) -> Any:
    """torch.save's pre-1.6 layout: magic, protocol, sys info, the object (storages as
    persistent ids), the storage keys, then each storage as an int64 element count and its bytes."""
    declared: dict[str, Any] = {}

    def persistent_load(pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[5] is not None:
            raise InspectorError(
                f"{path}: unsupported legacy PyTorch file (storage views); re-save it with a current torch.save"
            )
        _, storage_type, key, _, numel, _ = pid
        key = str(key)
        if key not in declared:
            declared[key] = _meta_storage(path, storage_type, numel, None, key)
        return declared[key]

    with path.open("rb") as raw:
        # the pickles come first: at most 1 MiB plus 1 KiB per storage they have declared so far
        fh = _Bounded(
            raw, size, path, limit=lambda: min(_MAX_PICKLE, _PICKLE_BASE + _PICKLE_PER_STORAGE * len(declared))
        )
        if _unpickler(fh, None).load() != _LEGACY_MAGIC:
            raise InspectorError(
                f"{path}: a pickle, but not written by torch.save; save with torch.save(model.state_dict(), ...)"
            )
        _unpickler(fh, None).load()  # protocol version
        _unpickler(fh, None).load()  # sys info
        obj = _unpickler(fh, persistent_load).load()
        keys = _unpickler(fh, None).load()
        fh.limit = None  # the storages' bytes follow: bounded by the file
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(declared):
            raise InspectorError(
                f"{path}: corrupt PyTorch file (storage list does not match); re-export or re-download it"
            )
        for key in map(str, keys):
            storage = declared[key]
            prefix = fh.read(8)
            count = struct.unpack("<q", prefix)[0] if len(prefix) == 8 else -1
            nbytes = storage._untyped_storage.nbytes()
            if count * storage.dtype.itemsize != nbytes or fh.tell() + nbytes > size:
                raise InspectorError(
                    f"{path}: truncated or corrupt PyTorch file (storage {key!r}); re-export or re-download it"
                )
            fh.seek(nbytes, io.SEEK_CUR)
    return obj


def check_tensor(path: Path, name: str, tensor: torch.Tensor) -> int:
    """``tensor``'s byte count, after checking its bytes are present in its storage.

    A view may not reach past its storage, nor claim more elements than the storage holds:
    ``torch.zeros(1).expand(30000, 30000)`` is 4 bytes on disk and 3.6 GB once touched.
    """
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise InspectorError(f"{path}: tensor {name!r} has an unsupported layout ({tensor.layout}); save dense tensors")
    check_shape(path, name, tuple(tensor.shape))
    itemsize = tensor.element_size()
    nbytes = tensor.numel() * itemsize
    available = tensor.untyped_storage().nbytes()
    if tensor.numel():
        if any(s < 0 for s in tensor.stride()) or tensor.storage_offset() < 0:
            raise InspectorError(f"{path}: tensor {name!r} has negative strides; the file is corrupt")
        last = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
        if (last + 1) * itemsize > available or nbytes > available:
            raise InspectorError(
                f"{path}: tensor {name!r} declares shape {tuple(tensor.shape)} ({nbytes:,} bytes) but "
                f"the file holds {available:,} bytes for it; the file is crafted or corrupt"
            )
    return nbytes


_NONFINITE_CHUNK = 1 << 20  # elements per isfinite() call: the scan's memory is bounded by this, not the tensor


def count_nonfinite(tensor: torch.Tensor, chunk: int = _NONFINITE_CHUNK) -> int:
    """NaN and Inf entries of ``tensor`` (0 for integer tensors), counted ``chunk`` elements at a time."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    if tensor.dim() == 0 or tensor.numel() <= chunk:
        if (
            tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
            and not tensor.is_complex()
        ):
            tensor = tensor.float()  # float8 has no isfinite kernel; the chunk bounds the copy
        return int((~torch.isfinite(tensor)).sum())
    row = tensor[0].numel()
    step = max(1, chunk // max(1, row))
    if step == 1 and tensor.dim() > 1:
        return sum(count_nonfinite(tensor[i], chunk) for i in range(tensor.shape[0]))
    return sum(count_nonfinite(tensor[i : i + step], chunk) for i in range(0, tensor.shape[0], step))

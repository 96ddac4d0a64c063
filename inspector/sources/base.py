"""The one protocol every checkpoint reader follows: :class:`TensorSource`.

A reader turns one file format into tensors: a header-only listing (:meth:`TensorSource.header`:
``meta`` tensors, no data read), one tensor at a time (:meth:`TensorSource.read`), everything
(:meth:`TensorSource.contents`), and, where the format records the computation and not only the
weights, a runnable module (:meth:`TensorSource.model`). Orientation and naming are normalised
here, by the reader: every dense weight leaves as ``(out_features, in_features)`` named
``<layer>.weight``, its bias as ``<layer>.bias``, so nothing above this layer knows formats.

A new format is one file holding a subclass, plus one line in :mod:`inspector.sources.registry`.
"""

from __future__ import annotations

import re
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from inspector.checks import printable
from inspector.formats import check_shape


def first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, printable and at most 200 characters."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = lines[0]
    # torch's messages run on for several sentences; the first one says what broke
    cut = first.find(". ")
    return printable((first[:cut] if cut > 0 else first)[:200])


def zip_names(path: Path) -> frozenset[str]:
    """The member names of the zip archive ``path``; empty when it is not a readable zip. A sniff never
    raises: a damaged archive (a flipped byte in its directory fails to decode) is left to the reader
    whose magic it still has, which reports it in one line."""
    try:
        with zipfile.ZipFile(path) as archive:
            return frozenset(archive.namelist())
    except Exception:  # BadZipFile, OSError, UnicodeDecodeError from a damaged directory, ...
        return frozenset()


def module_names_fit(names: list[str]) -> bool:
    """Whether ``names`` (dotted module paths, in the order the computation runs them) can name the
    modules of one ``nn.Sequential`` tree that runs them in that order: each part a non-empty name that
    is no attribute of a module, no path repeated or inside another, and each container's members in one
    unbroken run (``a.0, a.1, b`` fits; ``a.0, b, a.1`` does not: ``a`` would run both of its layers first)."""
    reserved = set(dir(nn.Sequential()))
    paths = [name.split(".") for name in names]
    if len(set(names)) != len(names) or any(not part or part in reserved for path in paths for part in path):
        return False
    leaves = set(names)
    closed: set[str] = set()  # containers left behind: entering one again would reorder the computation
    open_path: list[str] = []
    for path in paths:
        containers = [".".join(path[: i + 1]) for i in range(len(path) - 1)]
        if any(c in leaves for c in containers) or any(n.startswith(".".join(path) + ".") for n in names):
            return False  # a path that is both a layer and a container
        common = 0
        while common < min(len(open_path), len(containers)) and open_path[common] == containers[common]:
            common += 1
        closed.update(open_path[common:])
        if any(c in closed for c in containers[common:]):
            return False
        open_path = containers
    return True


def place_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Add ``module`` to ``root`` under the dotted path ``dotted``: ``encoder.0`` is module ``0`` of an
    ``nn.Sequential`` named ``encoder`` (made when missing), so that ``named_modules`` gives the file's
    names. Added in the order the computation runs them (see :func:`module_names_fit`)."""
    *blocks, leaf = dotted.split(".")
    _container(root, blocks).add_module(leaf, module)


def free_name(root: nn.Module, beside: str, wanted: str, avoid: Collection[str] = ()) -> str:
    """The dotted path of a module named ``wanted`` in the container of ``beside`` (an activation after
    its layer), made unique there, and unlike every path in ``avoid`` (names still to come), by
    trailing underscores."""
    *blocks, _ = beside.split(".")
    taken = _container(root, blocks)._modules
    while wanted in taken or ".".join([*blocks, wanted]) in avoid:
        wanted += "_"
    return ".".join([*blocks, wanted])


def _container(root: nn.Module, path: list[str]) -> nn.Module:
    container = root
    for block in path:
        if block not in container._modules:
            container.add_module(block, nn.Sequential())
        container = container._modules[block]  # type: ignore[assignment]
    return container


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding ``weight`` ``(out, in)`` and ``bias`` ``(out,)`` (or none), in their dtype:
    how a reader that rebuilds a model (:meth:`TensorSource.model`) makes each dense layer."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


#: Hugging Face GPT-2's dense layers, ``transformers.pytorch_utils.Conv1D``: weights stored ``(in, out)``
GPT2_CONV1D = re.compile(
    r"(?:transformer\.)?h\.\d+\.(?:mlp\.c_fc|mlp\.c_proj|attn\.c_attn|attn\.q_attn|attn\.c_proj)\.weight"
)
CONV1D_NOTICE = "GPT-2 Conv1D weights stored (in, out): read transposed"


def conv1d_weights(state: Mapping[str, torch.Tensor]) -> frozenset[str]:
    """The names in ``state`` that are GPT-2 ``Conv1D`` weights stored ``(in, out)``: the Hugging Face
    name family (``h.N.mlp.c_fc.weight``, ``h.N.mlp.c_proj.weight``, ``h.N.attn.c_attn.weight``,
    ``h.N.attn.c_proj.weight``, with or without ``transformer.``), 2-D, and where the layer has a bias
    ``(m,)`` its length is the weight's second dimension (what ``(in, out)`` means)."""
    found = set()
    for name, tensor in state.items():
        if tensor.dim() != 2 or not GPT2_CONV1D.fullmatch(name):
            continue
        bias = state.get(name[: -len("weight")] + "bias")
        if bias is None or tuple(bias.shape) == (tensor.shape[1],):
            found.add(name)
    return frozenset(found)


def transposed(contents: Contents, names: frozenset[str]) -> Contents:
    """``contents`` with the weights ``names`` (stored ``(in, out)``) turned to ``(out, in)``, and
    :data:`CONV1D_NOTICE` said once; unchanged when ``names`` is empty."""
    if not names:
        return contents
    state = {
        name: (t.t() if t.is_meta else t.t().contiguous()) if name in names else t for name, t in contents.state.items()
    }
    notices = contents.notices if CONV1D_NOTICE in contents.notices else (*contents.notices, CONV1D_NOTICE)
    return replace(contents, state=state, notices=notices)


@dataclass(frozen=True)
class Contents:
    """A file taken apart by its reader; tensors are ``meta`` (from :meth:`TensorSource.header`) or real.

    ``state``: the model's tensors in file order, dense weights ``(out, in)``.
    ``extras``: dense-inspector's own entries (config, history, dataset...) when this tool wrote the
    file, else ``None``; ``preprocessing`` and ``snapshots`` go with them.
    ``metadata``: what ``inspector info`` shows for a foreign file.
    ``module``: a whole pickled ``nn.Module`` (read only with ``trust_pickle``).
    """

    state: dict[str, torch.Tensor]
    extras: Mapping[str, Any] | None = None
    preprocessing: Any = None
    snapshots: dict[int, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    module: nn.Module | None = None
    notices: tuple[str, ...] = ()

    def with_state(self, state: dict[str, torch.Tensor]) -> Contents:
        return replace(self, state=state)


def without_empty(path: Path, contents: Contents) -> Contents:
    """``contents`` with every tensor's shape checked (:func:`inspector.formats.check_shape`) and its
    zero-size tensors left out, said in one notice: a ``(0, n)`` weight is an empty layer, holding no
    byte, and nothing may be sized by its other dimension (an ``n`` of 10^12 would ask for 4 TB)."""
    empty: list[str] = []
    for name, tensor in contents.state.items():
        shape = check_shape(path, name, tuple(tensor.shape))
        if 0 in shape:
            empty.append(f"{printable(name)[:60]} {shape}")
    if not empty:
        return contents
    state = {name: t for name, t in contents.state.items() if t.numel() != 0}
    shown = ", ".join(empty[:3]) + (", ..." if len(empty) > 3 else "")
    notice = (
        f"left out {len(empty)} zero-size tensor{'s' * (len(empty) > 1)} ({shown}): "
        f"{'they hold' if len(empty) > 1 else 'it holds'} no weights"
    )
    return replace(contents, state=state, notices=(*contents.notices, notice))


class TensorSource(ABC):
    """A checkpoint file (or folder) read through one format's reader.

    Subclasses set :attr:`format` (the name ``info`` shows) and implement :meth:`sniff`,
    :meth:`header` and :meth:`read`; :meth:`contents` and :meth:`model` have defaults.
    ``path`` is what the reader resolved (a sharded checkpoint's index, a folder's file).
    """

    format: ClassVar[str]
    #: whether, without a :meth:`model`, a chain of layers may be inferred from the tensors' names and
    #: shapes (a state dict's way); False where the format records the computation itself
    infers_mlp: ClassVar[bool] = True
    #: shard file of each tensor, for formats that spread tensors over files
    shards: dict[str, Path] | None = None

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        self.path = path
        self.trust_pickle = trust_pickle

    @classmethod
    @abstractmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """Whether this reader reads ``path``, from its first bytes ``head`` (empty for a folder)."""

    @abstractmethod
    def header(self) -> Contents:
        """Every tensor as a ``meta`` tensor (shape, dtype; no data read), validated against the bytes."""

    @abstractmethod
    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, tensor)`` for ``names`` (names from :meth:`header`), one at a time."""

    def contents(self) -> Contents:
        """The header with every tensor read."""
        header = self.header()
        return header.with_state(dict(self.read(list(header.state))))

    def model(self, activation: str | None) -> nn.Module | None:
        """A runnable module rebuilt from the file, where the format records the computation
        (activations, output function) and not only weights; ``None`` otherwise."""
        return None

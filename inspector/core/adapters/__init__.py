"""Input adapters, one class per input kind, and the registry from the kind's name to its class.

The name is what results store as ``ModelInfo.input_kind`` (and ``ImportanceReport.input_kind``), so a
figure or view holding only a saved result gets the same behaviour with :func:`adapter_for`. A new
input kind is one new file here (a subclass of :class:`InputAdapter`) and one line in :data:`ADAPTERS`.
"""

from __future__ import annotations

import torch

from inspector.core.adapters.array import ArrayAdapter
from inspector.core.adapters.base import InputAdapter
from inspector.core.adapters.features import FeaturesAdapter
from inspector.core.adapters.tokens import EmbeddingForward, TokensAdapter, input_embedding
from inspector.errors import InspectorError

# the first class whose ``accepts`` takes an input is the one make_adapter builds
ADAPTERS: dict[str, type[InputAdapter]] = {
    FeaturesAdapter.kind: FeaturesAdapter,
    ArrayAdapter.kind: ArrayAdapter,
    TokensAdapter.kind: TokensAdapter,
}
KINDS = tuple(ADAPTERS)


def adapter_for(kind: str) -> type[InputAdapter]:
    """The adapter class of the input kind ``kind`` (a saved result's ``input_kind``)."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise InspectorError(f"unknown input kind {kind!r}; known: {', '.join(ADAPTERS)}") from None


def adapter_class(inputs: torch.Tensor) -> type[InputAdapter]:
    """The first registered class that accepts an attributed input like ``inputs`` ``(n, ...)``."""
    for cls in ADAPTERS.values():
        if cls.accepts(inputs):
            return cls
    raise InspectorError(
        f"{inputs.dtype} inputs are not supported; give float features or arrays, or integer token ids"
    )


__all__ = [
    "ADAPTERS",
    "KINDS",
    "ArrayAdapter",
    "EmbeddingForward",
    "FeaturesAdapter",
    "InputAdapter",
    "TokensAdapter",
    "adapter_class",
    "adapter_for",
    "input_embedding",
]

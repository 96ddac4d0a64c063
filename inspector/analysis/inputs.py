"""What a batch is and how it reaches the model: the input adapter.

Every data section (census, importance, pruning, evaluation) reads the data
through one :class:`DataSource` and hands each :class:`Batch` to the model
through :meth:`Batch.call`; none of them assumes "input = float ``(n, d)``,
feature = column". What the data may be (after torchinfo's opaque
``input_data`` and Hugging Face's dict batches):

* ``(X, y)`` arrays or tensors, a single tensor ``X`` (inputs only), an
  :class:`~inspector.evaluation.EvalData`;
* a map-style ``torch.utils.data.Dataset`` (batched here with a ``DataLoader``);
* a ``DataLoader`` or any re-iterable of batches (a list of batches).

A batch is a tensor (inputs only), a tuple/list ``(inputs, labels)``, or a
mapping passed to ``forward`` as keyword arguments (a tokenizer's output): its
``labels`` (or ``label``) entry is the labels, never passed to ``forward``, and
its ``attention_mask`` marks padded positions (passed to ``forward`` and used
to leave padding out of every statistic).

The attributed input is the positional input, or in a mapping ``input_ids``,
``inputs_embeds``, ``pixel_values``, ... (see :data:`INPUT_KEYS`). Its dtype
decides the kind: floating inputs are ``"features"`` (``(n, d)``) or
``"array"`` (any other shape, e.g. images ``(n, C, H, W)``; an attribution has
the input's shape), integer inputs are ``"tokens"`` (attributed through the
model's input embedding; a feature is a distinct token). Each kind is one adapter
class in :mod:`inspector.core.adapters` (re-exported here with :func:`make_adapter`,
which builds the one whose ``accepts`` takes the first batch's input).

Data is streamed batch by batch and never gathered; what must be kept (the
samples for attribution, the projection's sample) is a bounded prefix,
:meth:`DataSource.head`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from inspector.core.adapters import (
    KINDS,
    ArrayAdapter,
    FeaturesAdapter,
    InputAdapter,
    TokensAdapter,
    adapter_class,
    adapter_for,
    input_embedding,
)
from inspector.core.batches import (  # re-exported: where the analyses have always found them
    INPUT_KEYS,
    LABEL_KEYS,
    MASK_KEY,
    Batch,
    DataSource,
    Shard,
    all_finite,
    as_source,
    floating_dtype,
    model_device,
    take,
    to_batch,
)

__all__ = [
    "INPUT_KEYS",
    "KINDS",
    "LABEL_KEYS",
    "MASK_KEY",
    "adapter_class",
    "adapter_for",
    "all_finite",
    "ArrayAdapter",
    "as_source",
    "Batch",
    "DataSource",
    "FeaturesAdapter",
    "floating_dtype",
    "input_embedding",
    "InputAdapter",
    "make_adapter",
    "model_device",
    "Shard",
    "take",
    "to_batch",
    "TokensAdapter",
]


def make_adapter(
    model: nn.Module,
    first: Batch,
    *,
    feature_names: Sequence[str] = (),
    tokenizer: Any = None,
    vocabulary: Sequence[str] | None = None,
) -> InputAdapter:
    """The :class:`InputAdapter` for ``model`` fed batches like ``first``: the first class of the
    registry (:data:`~inspector.core.adapters.ADAPTERS`) that accepts the attributed input (float
    ``(n, d)``: :class:`FeaturesAdapter`, other float shapes: :class:`ArrayAdapter`, integer ids:
    :class:`TokensAdapter`), built by its ``create``."""
    return adapter_class(first.inputs).create(
        model, first, feature_names=feature_names, tokenizer=tokenizer, vocabulary=vocabulary
    )

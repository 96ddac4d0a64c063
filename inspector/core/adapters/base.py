"""What every input adapter owns: :class:`InputAdapter`, the base of one class per input kind.

An adapter says what the attributed input is (a sample's shape, the names of its features), what an
attribution starts from (:meth:`InputAdapter.baseline`), which route it takes (at the input itself,
or through the model's input embedding: :meth:`InputAdapter.path`), and how a figure or view shows
per-feature importance (:attr:`InputAdapter.display`, :meth:`InputAdapter.map_shape`,
:meth:`InputAdapter.element_label`). Sections, figures and views ask the adapter instead of testing
its kind; figures and views, which only hold a saved result, get the class from its
``input_kind`` with :func:`inspector.core.adapters.adapter_for`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from inspector.errors import InspectorError


class AdaptedBatch(Protocol):
    """What an adapter reads of a batch (:class:`inspector.analysis.inputs.Batch` is one): the
    attributed input ``(n, ...)``, the keyword it is passed under, its rows, the model's output on it."""

    @property
    def inputs(self) -> torch.Tensor: ...

    @property
    def key(self) -> str | None: ...

    def rows(self, index: slice) -> AdaptedBatch: ...

    def call(self, model: nn.Module, inputs: torch.Tensor | None = None) -> Any: ...


# what a conductance path is: (the function of the path point, the inputs, the baselines, the extra arguments)
Path = tuple[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor, tuple[Any, ...]]


@dataclass(frozen=True)
class InputAdapter:
    """What the attributed input is, decided once per analysis from the first batch and the model.

    Subclasses set the class attributes below and override what differs; the fields are the same for
    every kind. ``key``: the keyword the input is passed under (``None``: positional).
    ``sample_shape``: one sample's input shape (``(d,)``, ``(C, H, W)``, ``(T,)`` of the first batch).
    ``embedding``: for token ids, the module path of the ``nn.Embedding`` the ids go through.
    ``feature_names``: one per input element for feature columns (``x0``... unless the data names
    them), empty otherwise. ``vocabulary``: token text by id when a tokenizer or vocabulary was
    given. ``pad_id``: the id used as the reference ("nothing here") token.
    """

    kind: ClassVar[str] = ""
    """The name saved in results as ``ModelInfo.input_kind`` / ``ImportanceReport.input_kind``."""
    description: ClassVar[str] = ""
    """The inputs in words, for messages: "feature columns", "arrays (images)", "token ids"."""
    display: ClassVar[str] = "bars"
    """How per-feature importance is shown: ``"bars"`` (a bar chart of named features), ``"image"``
    (a map on the input grid) or ``"tokens"`` (a token table and text highlighted by attribution)."""
    through_embedding: ClassVar[bool] = False
    """The attribution route: ``False`` at the input itself (the attribution has the input's shape),
    ``True`` through the model's input embedding (Captum's layer variants, summed per position)."""
    features_are_ids: ClassVar[bool] = False
    """A feature is a distinct id (importance summed per id over the real positions, samples kept
    with their padding mask), not an input element."""
    ragged: ClassVar[bool] = False
    """Samples of different batches may differ in length: batches are explained one by one, never joined."""
    editable: ClassVar[bool] = True
    """A sample's input values can be edited and re-evaluated (the probe's what-if evaluation)."""
    whatif: ClassVar[bool] = False
    """The what-if section and view apply: one slider and one partial-dependence curve per named feature."""
    neuron_conductance_skip: ClassVar[str | None] = None
    """Why NeuronConductance is never run for these inputs, ``None`` when it can be."""
    analysis_defaults: ClassVar[dict[str, Any]] = {}
    """The analysis options these inputs default to where the caller left them unset (``None``), by
    :class:`~inspector.analysis.options.AnalysisOptions` field name; the rest take the global defaults."""

    key: str | None
    sample_shape: tuple[int, ...]
    embedding: str | None = None
    feature_names: tuple[str, ...] = ()
    vocabulary: Callable[[int], str] | None = None
    pad_id: int = 0

    @classmethod
    def accepts(cls, inputs: torch.Tensor) -> bool:
        """Whether this kind is the one for an attributed input like ``inputs`` ``(n, ...)``; the
        registry's first class that accepts it is the one :func:`~inspector.analysis.inputs.make_adapter` builds."""
        return False

    @classmethod
    def create(
        cls,
        model: nn.Module,
        first: AdaptedBatch,
        *,
        feature_names: Sequence[str] = (),
        tokenizer: Any = None,
        vocabulary: Sequence[str] | None = None,
    ) -> InputAdapter:
        """The adapter for ``model`` fed batches like ``first`` (``feature_names``: the data's column
        names; ``tokenizer``/``vocabulary``: token text); an :class:`InspectorError` saying what to
        change when ``model`` cannot take these inputs."""
        return cls(first.key, tuple(int(s) for s in first.inputs.shape[1:]))

    @property
    def n_features(self) -> int | None:
        """Input elements per sample; ``None`` when a feature is a distinct id."""
        return None if self.features_are_ids else int(math.prod(self.sample_shape))

    def per_sample_elements(self, model: nn.Module) -> int:
        """Elements one sample puts through a forward pass at the attributed point."""
        return max(1, int(math.prod(self.sample_shape)))

    def baseline(self, inputs: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """What Integrated Gradients, DeepLift and conductance start from, for ``inputs`` ``(n, ...)``
        (``real`` ``(n, T)`` bool: the real positions): an all-zero input ``(1, ...)``, broadcast over
        the rows (after dense-inspector's standardisation, zero is the training mean)."""
        return torch.zeros_like(inputs[:1])

    def path(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        real: torch.Tensor | None,
        forward: Callable[..., torch.Tensor],
        args: tuple[Any, ...],
    ) -> Path:
        """Where a path attribution (conductance) runs: ``(forward, x, x0, args)`` such that
        ``forward(x, *args)`` is the explained target ``(n, 1)`` and ``x0`` the baseline of ``x``."""
        return forward, inputs, self.baseline(inputs, real), args

    @property
    def baseline_text(self) -> str:
        """The baseline in words, stored with the importance report."""
        return "an all-zero input"

    def importance_names(self, token_ids: np.ndarray) -> tuple[str, ...]:
        """The name of each entry of a global importance vector (``token_ids``: the distinct ids
        explained, used when a feature is an id)."""
        return tuple(self.feature_names)

    @classmethod
    def element_label(cls, index: int, input_shape: tuple[int, ...]) -> str | None:
        """The label of input element ``index`` when the adapter has one of its own (an array
        element's position), else ``None`` (the caller falls back to a name or ``x<index>``)."""
        return None

    @classmethod
    def map_shape(cls, input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """The shape importance maps are drawn in (from a saved result's ``input_shape`` and the
        dataset's ``image_shape``), ``None`` when these inputs are not drawn as an image."""
        return tuple(image_shape) if image_shape else None

    def token_text(self, ids: Sequence[int] | np.ndarray) -> tuple[str, ...]:
        """The text of each token id (``"#<id>"`` when no tokenizer or vocabulary was given)."""
        if self.vocabulary is None:
            return tuple(f"#{int(i)}" for i in ids)
        return tuple(self.vocabulary(int(i)) for i in ids)

    def embedding_module(self, model: nn.Module) -> nn.Module:
        if self.embedding is None:
            raise InspectorError("the inputs are not token ids; there is no input embedding")
        return model.get_submodule(self.embedding)

    def with_names(self, names: Sequence[str]) -> InputAdapter:
        return replace(self, feature_names=tuple(names))

"""Feature columns: float inputs ``(n, d)``, one named feature per column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from inspector.core.adapters.base import AdaptedBatch, InputAdapter
from inspector.errors import InspectorError


@dataclass(frozen=True)
class FeaturesAdapter(InputAdapter):
    """Float ``(n, d)`` inputs: attributed at the input from an all-zero baseline, importance shown
    as a bar chart of the named columns (or a map when the dataset says its columns are an image),
    what-if curves and sliders per column."""

    kind: ClassVar[str] = "features"
    description: ClassVar[str] = "feature columns"
    display: ClassVar[str] = "bars"
    whatif: ClassVar[bool] = True

    @classmethod
    def accepts(cls, inputs: torch.Tensor) -> bool:
        return inputs.is_floating_point() and inputs.dim() == 2

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
        """Named by ``feature_names`` (one per column), else ``x0``, ``x1``, ..."""
        width = int(first.inputs.shape[1])
        names = tuple(feature_names) if feature_names else tuple(f"x{i}" for i in range(width))
        if len(names) != width:
            raise InspectorError(f"{len(names)} feature names for inputs with {width} features")
        return cls(first.key, (width,), feature_names=names)

    @property
    def baseline_text(self) -> str:
        return "an all-zero input (the training mean, for data dense-inspector standardised)"

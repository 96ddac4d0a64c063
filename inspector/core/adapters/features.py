"""Feature columns: float inputs ``(n, d)``, one named feature per column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inspector.core.adapters.base import InputAdapter


@dataclass(frozen=True)
class FeaturesAdapter(InputAdapter):
    """Float ``(n, d)`` inputs: attributed at the input from an all-zero baseline, importance shown
    as a bar chart of the named columns (or a map when the dataset says its columns are an image),
    what-if curves and sliders per column."""

    kind: ClassVar[str] = "features"
    description: ClassVar[str] = "feature columns"
    display: ClassVar[str] = "bars"
    whatif: ClassVar[bool] = True

    @property
    def baseline_text(self) -> str:
        return "an all-zero input (the training mean, for data dense-inspector standardised)"

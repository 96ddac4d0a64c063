"""The finding record and the wording every section's findings share.

A finding is one plain-language sentence with the numbers it quotes. Each section's findings are written
in its own file under :mod:`inspector.analysis.sections` (``parameter_findings`` in
``sections/parameters.py``, ``activation_findings`` in ``sections/activations.py``, ...); this module
holds only the record and the helpers that make counts, percentages and scores read the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from inspector.results import result

# rank correlation with a randomised model above which a method is flagged (the importance section's
# findings, and the report's and the dashboard's verdicts)
SANITY_FAIL = 0.5


@result
class Finding:
    """``severity``: ``info`` or ``warning``. ``numbers`` are the values quoted in ``text``."""

    section: str
    severity: str
    text: str
    numbers: dict[str, float]


def pct(x: float) -> str:
    """``0.1234`` as ``12.3%``."""
    return f"{100 * x:.1f}%"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 neuron``, ``2 neurons``, ``1,634 parameters``: the number and the noun that agrees with it."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def agree(n: int, one: str, many: str) -> str:
    """The word (noun or verb) that agrees with a count of ``n``."""
    return one if n == 1 else many


def score_texts(data: Any) -> tuple[str, str, str]:
    """``(metric name, metric value, ", loss ...")`` of a :class:`~inspector.analysis.result.DataInfo` as text:
    accuracy as a percentage, R² and user metrics as numbers, the loss named unless it is cross-entropy
    (a custom task has none)."""
    name = data.metric_name
    if not math.isfinite(data.metric):
        value = "n/a"
    else:
        value = f"{data.metric:.2%}" if name == "accuracy" else f"{data.metric:.4f}"
    loss = ""
    if data.loss_name is not None and math.isfinite(data.loss):
        label = "loss" if data.loss_name == "cross-entropy" else data.loss_name
        loss = f", {label} {data.loss:.4f}"
    return name, value, loss


def describe_samples(n: int, split: str, name: str | None = None) -> str:
    """``359 digits test samples``; a split of ``all`` (every row of a file) is not a split name: ``600 samples``."""
    words = [name] if name else []
    if split and split != "all":
        words.append(split)
    return " ".join([f"{n:,}", *words, "sample" if n == 1 else "samples"])


def preview(names: list[str], k: int = 3) -> str:
    """The first ``k`` names, then how many more."""
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")

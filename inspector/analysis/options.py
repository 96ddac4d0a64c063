"""Which sections :func:`~inspector.analysis.analyze` runs, and how."""

from __future__ import annotations

from dataclasses import dataclass

from inspector.analysis.methods import METHODS
from inspector.analysis.pruning import DEFAULT_SPARSITIES, SCOPES
from inspector.analysis.reduced_dtype import torch_dtype
from inspector.errors import InspectorError

SECTIONS = ("parameters", "weights", "activations", "importance", "whatif", "pruning", "training")
# whatif: partial dependence and ICE curves, for tabular inputs only (skipped for others)
DATA_SECTIONS = ("activations", "importance", "whatif", "pruning")


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs for :func:`analyze`; the defaults suit models up to a few thousand neurons."""

    sections: tuple[str, ...] = SECTIONS
    nearly_dead_threshold: float = 0.01
    methods: tuple[str, ...] = METHODS
    n_steps: int = 50
    max_importance_samples: int = 1000
    conductance: bool = True
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    pruning_scopes: tuple[str, ...] = SCOPES
    finetune_epochs: int = 0
    batch_size: int = 1024
    max_samples: int | None = None
    # the forward passes of the census, evaluation and pruning's evaluations: fp32 (the model as it is),
    # bf16 or fp16 (a cast copy; see inspector.analysis.reduced_dtype). Importance stays float32.
    dtype: str = "fp32"
    # each neuron's top-activating examples kept by the census (0: none; see inspector.analysis.top_examples)
    top_k: int = 20

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise InspectorError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise InspectorError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
        torch_dtype(self.dtype)
        if not 0 < self.nearly_dead_threshold < 1:
            raise InspectorError("the nearly-dead threshold must lie strictly between 0 and 1")
        for name, value, least in (
            ("n_steps", self.n_steps, 1),
            ("finetune_epochs", self.finetune_epochs, 0),
            ("batch_size", self.batch_size, 1),
            ("max_importance_samples", self.max_importance_samples, 1),
            ("max_samples", 1 if self.max_samples is None else self.max_samples, 1),
            ("top_k", self.top_k, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InspectorError(f"{name} must be an integer of at least {least}, got {value!r}")

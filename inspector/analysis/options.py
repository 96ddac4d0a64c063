"""Which sections :func:`~inspector.analysis.analyze` runs, and how."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from inspector.analysis.conductance import CONDUCTANCE_SAMPLES
from inspector.analysis.methods import METHODS
from inspector.analysis.pruning import DEFAULT_SPARSITIES, SCOPES
from inspector.analysis.reduced_dtype import torch_dtype
from inspector.core.adapters import InputAdapter
from inspector.errors import InspectorError

SECTIONS = ("parameters", "weights", "activations", "importance", "whatif", "pruning", "training")
# whatif: partial dependence and ICE curves, for tabular inputs only (skipped for others)
DATA_SECTIONS = ("activations", "importance", "whatif", "pruning")


# The importance and pruning settings left ``None`` in AnalysisOptions: the input kind's own default
# (InputAdapter.analysis_defaults; token ids run fewer methods on fewer samples, see
# inspector.core.adapters.tokens), else these. max_pruning_samples None: every sample.
PER_INPUT_DEFAULTS: dict[str, Any] = {
    "methods": METHODS,
    "n_steps": 50,
    "max_importance_samples": 1000,
    "conductance_samples": CONDUCTANCE_SAMPLES,
    "max_pruning_samples": None,
}


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs for :func:`analyze`; the defaults suit models up to a few thousand neurons.

    ``methods``, ``n_steps``, ``max_importance_samples``, ``conductance_samples`` (the samples hidden
    layers' conductance explains, at most the importance samples) and ``max_pruning_samples`` (the
    samples pruning evaluates each level on): ``None`` takes the input kind's default
    (:meth:`for_inputs`): for feature columns and arrays all seven methods, 50 steps, 1000 samples,
    128 for conductance, pruning on every sample; for token ids Integrated Gradients, Input x Gradient
    and Saliency, 16 steps, 32 samples, 16 for conductance, pruning on the first 64 samples (the rest
    on request: docs/sections.md gives each method's measured cost).
    """

    sections: tuple[str, ...] = SECTIONS
    nearly_dead_threshold: float = 0.01
    methods: tuple[str, ...] | None = None
    n_steps: int | None = None
    max_importance_samples: int | None = None
    conductance: bool = True
    conductance_samples: int | None = None
    max_pruning_samples: int | None = None
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
        unknown = set(self.methods or ()) - set(METHODS)
        if unknown:
            raise InspectorError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
        torch_dtype(self.dtype)
        if not 0 < self.nearly_dead_threshold < 1:
            raise InspectorError("the nearly-dead threshold must lie strictly between 0 and 1")
        for name, value, least in (
            ("n_steps", 1 if self.n_steps is None else self.n_steps, 1),
            ("finetune_epochs", self.finetune_epochs, 0),
            ("batch_size", self.batch_size, 1),
            ("max_importance_samples", 1 if self.max_importance_samples is None else self.max_importance_samples, 1),
            ("conductance_samples", 1 if self.conductance_samples is None else self.conductance_samples, 1),
            ("max_pruning_samples", 1 if self.max_pruning_samples is None else self.max_pruning_samples, 1),
            ("max_samples", 1 if self.max_samples is None else self.max_samples, 1),
            ("top_k", self.top_k, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InspectorError(f"{name} must be an integer of at least {least}, got {value!r}")

    def for_inputs(self, adapter: InputAdapter | type[InputAdapter] | None) -> AnalysisOptions:
        """These options with every per-input setting left ``None`` filled in: the adapter's
        :attr:`~inspector.core.adapters.InputAdapter.analysis_defaults` for that field, else
        :data:`PER_INPUT_DEFAULTS` (``adapter`` ``None``: no data, the global defaults)."""
        own = adapter.analysis_defaults if adapter is not None else {}
        chosen = {
            f.name: own.get(f.name, PER_INPUT_DEFAULTS[f.name])
            for f in fields(self)
            if f.name in PER_INPUT_DEFAULTS and getattr(self, f.name) is None
        }
        return replace(self, **chosen) if chosen else self

"""The result of :func:`~inspector.analysis.analyze`: what was analysed, on which data, and every section."""

from __future__ import annotations

import os
from pathlib import Path

from inspector.analysis.activations import DeathTimeline, LayerActivations
from inspector.analysis.diagnostics import TrainingDiagnostics
from inspector.analysis.findings import Finding
from inspector.analysis.importance import ImportanceReport
from inspector.analysis.parameters import ParameterReport
from inspector.analysis.pruning import PruningReport
from inspector.analysis.sites import Site
from inspector.analysis.top_examples import TopExample, TopExamples
from inspector.analysis.weights import LayerWeights
from inspector.analysis.whatif import PartialDependence
from inspector.errors import InspectorError
from inspector.results import load_result, result, save_result


@result
class ModelInfo:
    """What was analysed, for any model.

    ``architecture``: "MLP 64-128-10 (relu)" for dense-inspector's own MLPs, else the class
    name. ``layer_sizes``: the first linear layer's inputs then every linear layer's outputs
    (a chain only for MLPs); ``activation``, ``batch_norm``, ``dropout``: set for MLPs.
    ``blocks``: each linear layer with its activation (for diagrams). ``sites``: every
    ``nn.Linear`` with its activation and how it was found. ``embeddings``: the module paths of
    the ``nn.Embedding`` layers (not dense layers). ``modules``: the module tree, ``(path, class
    name)`` per module. ``task``: classification, regression or custom; ``target``: what an
    attribution explains. ``input_kind``: features, array or tokens; ``input_shape``: one
    sample's input shape. ``dtype``: what the census, evaluation and pruning forwards ran in
    (``fp32``: the model as it is; ``bf16`` / ``fp16``: a cast copy, see :mod:`inspector.analysis.reduced_dtype`).
    """

    source: str
    architecture: str
    layer_sizes: tuple[int, ...]
    activation: str | None
    batch_norm: bool
    dropout: float
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int] | None
    blocks: tuple[tuple[str, str], ...]
    nonfinite: tuple[str, ...]
    sites: tuple[Site, ...] = ()
    embeddings: tuple[str, ...] = ()
    modules: tuple[tuple[str, str], ...] = ()
    task: str = "classification"
    target: str = "the true class's logit"
    input_kind: str = "features"
    input_shape: tuple[int, ...] = ()
    dtype: str = "fp32"


@result
class DataInfo:
    """The evaluation data and the model's score on it: ``metric`` (accuracy, R², a user metric)
    and ``loss`` (cross-entropy, MSE; NaN for a custom task), named by ``metric_name`` / ``loss_name``."""

    name: str
    split: str
    n_samples: int
    metric: float
    loss: float
    task: str = "classification"
    metric_name: str = "accuracy"
    loss_name: str | None = "cross-entropy"

    @property
    def accuracy(self) -> float:
        """The accuracy of a classifier; NaN for other tasks (see ``metric``)."""
        return self.metric if self.metric_name == "accuracy" else float("nan")


@result
class Analysis:
    """Everything dense-inspector knows about one model; sections not run are ``None``."""

    model: ModelInfo
    data: DataInfo | None
    parameters: ParameterReport
    weights: tuple[LayerWeights, ...] | None
    activations: tuple[LayerActivations, ...] | None
    deaths: DeathTimeline | None
    importance: ImportanceReport | None
    pruning: PruningReport | None
    training: TrainingDiagnostics | None
    findings: tuple[Finding, ...]
    timings: dict[str, float]
    package_version: str
    whatif: PartialDependence | None = None  # tabular inputs only; absent from older folders

    def save(self, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write ``directory/analysis.json`` + the arrays file it names, atomically (see :func:`save_result`)."""
        return save_result(self, directory, force=force)

    def top_examples(self, layer: str, neuron: int) -> tuple[TopExample, ...]:
        """Neuron ``neuron`` of layer ``layer``: its top-activating examples, the strongest first
        (:meth:`TopExamples.examples`); an :class:`InspectorError` when the analysis has none for it."""
        return self.layer_top_examples(layer).examples(neuron)

    def layer_top_examples(self, layer: str) -> TopExamples:
        """Layer ``layer``'s :class:`TopExamples`; an :class:`InspectorError` when the analysis has none."""
        for census in self.activations or ():
            if census.layer == layer and census.top_examples is not None:
                return census.top_examples
        known = [c.layer for c in self.activations or () if c.top_examples is not None]
        raise InspectorError(
            f"no top examples for layer {layer!r}; "
            + (f"layers with them: {', '.join(known)}" if known else "run the analysis with data and top_k > 0")
        )

    @staticmethod
    def load(directory: str | os.PathLike[str]) -> Analysis:
        obj = load_result(directory)
        if not isinstance(obj, Analysis):
            raise InspectorError(f"{directory}: holds a {type(obj).__name__}, not an analysis")
        return obj

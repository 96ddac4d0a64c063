"""One entry point for every analysis: :func:`analyze` returns an :class:`Analysis`.

Weight-only sections (parameters, weights, training diagnostics) run without
data; the data sections (activations, importance, pruning) need evaluation
data. The model is never changed: eval mode inside, ``training`` and
``requires_grad`` restored, hooks removed, pruning on a copy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspector._version import __version__
from inspector.analysis import findings as F
from inspector.analysis.activations import DeathTimeline, LayerActivations, activation_census, death_timeline
from inspector.analysis.diagnostics import TrainingDiagnostics, training_diagnostics
from inspector.analysis.guard import inspecting
from inspector.analysis.importance import METHODS, ImportanceReport, importance_report
from inspector.analysis.parameters import ParameterReport, count_parameters, linear_layers
from inspector.analysis.pruning import DEFAULT_SPARSITIES, SCOPES, PruningReport, pruning_sweep
from inspector.analysis.weights import LayerWeights, weight_report
from inspector.checkpoints import Checkpoint
from inspector.errors import InspectorError, NotAnMLPError
from inspector.evaluation import EvalData
from inspector.results import load_result, result, save_result
from inspector.training import History, evaluate

SECTIONS = ("parameters", "weights", "activations", "importance", "pruning", "training")
DATA_SECTIONS = ("activations", "importance", "pruning")


@result
class ModelInfo:
    """What was analysed. ``layer_sizes`` and ``activation`` are set for MLPs; ``blocks``
    lists each linear layer with the activation that follows it (for diagrams)."""

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


@result
class DataInfo:
    name: str
    split: str
    n_samples: int
    accuracy: float
    loss: float


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
    findings: tuple[F.Finding, ...]
    timings: dict[str, float]
    package_version: str

    def save(self, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write ``directory/analysis.json`` + the arrays file it names, atomically (see :func:`save_result`)."""
        return save_result(self, directory, force=force)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
        """The self-contained HTML report; also written to ``path`` (atomically) when given."""
        from inspector.report import to_html, write_report  # the report is a face: imported on use

        if path is not None:
            write_report(self, path, "html", force=force)
            return Path(path).read_text(encoding="utf-8")
        return to_html(self)

    def to_markdown(self) -> str:
        from inspector.report import to_markdown

        return to_markdown(self)

    @staticmethod
    def load(directory: str | os.PathLike[str]) -> Analysis:
        obj = load_result(directory)
        if not isinstance(obj, Analysis):
            raise InspectorError(f"{directory}: holds a {type(obj).__name__}, not an analysis")
        return obj


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

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise InspectorError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise InspectorError(f"unknown attribution methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
        if not 0 < self.nearly_dead_threshold < 1:
            raise InspectorError("the nearly-dead threshold must lie strictly between 0 and 1")
        for name, value, least in (("n_steps", self.n_steps, 1), ("finetune_epochs", self.finetune_epochs, 0),
                                   ("batch_size", self.batch_size, 1),
                                   ("max_importance_samples", self.max_importance_samples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InspectorError(f"{name} must be an integer of at least {least}, got {value!r}")


def _blocks(model: nn.Module) -> tuple[tuple[str, str], ...]:
    from inspector.analysis.activations import activation_sites

    after = {linear: kind for _, linear, _, kind in activation_sites(model)}
    return tuple((name, after.get(name, "none")) for name, _ in linear_layers(model))


def _model_info(model: nn.Module, ckpt: Checkpoint | None, data: EvalData | None) -> ModelInfo:
    layers = linear_layers(model)
    config = getattr(model, "config", None) if ckpt is None else ckpt.config
    sizes = tuple([layers[0][1].in_features] + [layer.out_features for _, layer in layers]) if layers else ()
    ds = ckpt.dataset if ckpt is not None else None
    features = data.feature_names if data else (ds.feature_names if ds else tuple(f"x{i}" for i in range(sizes[0] if sizes else 0)))
    classes = data.class_names if data else (ds.class_names if ds else tuple(str(c) for c in range(sizes[-1] if sizes else 0)))
    image_shape = data.image_shape if data else (ds.image_shape if ds else None)
    if config is not None:
        arch = f"MLP {'-'.join(map(str, config.layer_sizes))} ({config.activation})"
    else:
        arch = type(model).__name__
    return ModelInfo(
        source=ckpt.source if ckpt else "<model>", architecture=arch, layer_sizes=sizes,
        activation=config.activation if config else None, batch_norm=bool(config.batch_norm) if config else False,
        dropout=float(config.dropout) if config else 0.0, feature_names=tuple(features), class_names=tuple(classes),
        image_shape=image_shape, blocks=_blocks(model),
        # from the module itself: a rebuilt foreign model renames the file's keys
        nonfinite=tuple(name for name, t in model.state_dict().items()
                        if t.is_floating_point() and not bool(torch.isfinite(t).all())),
    )


def analyze(
    model: nn.Module | Checkpoint,
    data: EvalData | None = None,
    *,
    history: History | None = None,
    snapshots: dict[int, dict[str, torch.Tensor]] | None = None,
    options: AnalysisOptions | None = None,
) -> Analysis:
    """Analyse ``model`` (an ``nn.Module`` or a loaded :class:`~inspector.checkpoints.Checkpoint`).

    Args:
        model: any module with ``nn.Linear`` layers; data sections need it to map
            ``(batch, d)`` inputs to ``(batch, C)`` logits.
        data: evaluation data (see :class:`~inspector.evaluation.EvalData`); without it
            only the weight-only sections run.
        history, snapshots: training history and ``{epoch: state_dict}``; taken from
            the checkpoint when ``model`` is one.
        options: which sections and how; see :class:`AnalysisOptions`.
    """
    options = options or AnalysisOptions()
    ckpt = model if isinstance(model, Checkpoint) else None
    module: nn.Module = ckpt.model if ckpt is not None else model  # type: ignore[assignment]
    if ckpt is not None:
        history = history or ckpt.history
        snapshots = snapshots or ckpt.snapshots
    if not linear_layers(module):
        raise InspectorError("the model has no nn.Linear layers; nothing dense to analyse")
    wanted = set(options.sections)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - started
        return value

    info = _model_info(module, ckpt, data)
    parameters = timed("parameters", lambda: count_parameters(module))
    weights = timed("weights", lambda: weight_report(module, info.image_shape)) if "weights" in wanted else None
    found: list[F.Finding] = F.parameter_findings(parameters)
    for name in info.nonfinite:
        found.append(F.Finding("weights", "warning", f"{name} holds NaN or Inf values; results that use it are "
                               "unreliable", {}))
    if weights:
        found += F.weight_findings(weights)

    data_info = census = deaths = importance = pruning = None
    # Evaluated even when --sections leaves out every data section: one forward pass, and the
    # summary can then say the data was there and the sections were not asked for.
    if data is not None:
        device = next(module.parameters()).device
        X = torch.as_tensor(data.X, dtype=torch.float32, device=device)
        y = torch.as_tensor(data.y, dtype=torch.long, device=device)
        with inspecting(module):
            loss, accuracy = evaluate(module, X, y)
        data_info = DataInfo(data.name, data.split, int(len(data.y)), accuracy, loss)
        n_classes = info.layer_sizes[-1]
        if "activations" in wanted:
            census = timed("activations", lambda: activation_census(
                module, X, data.y, batch_size=options.batch_size,
                nearly_dead_threshold=options.nearly_dead_threshold))
            found += F.activation_findings(census, data.split)
            if snapshots:
                deaths = timed("deaths", lambda: death_timeline(module, snapshots, X, batch_size=options.batch_size))
                found += F.death_findings(deaths)
        if "importance" in wanted:
            importance = timed("importance", lambda: importance_report(
                module, X, y, n_classes, methods=options.methods, n_steps=options.n_steps,
                max_samples=options.max_importance_samples, with_conductance=options.conductance))
            found += F.importance_findings(importance, info.feature_names)
        if "pruning" in wanted:
            dead = {c.linear: c.dead_mask for c in census or () if c.dead_mask is not None}
            finetune = (data.train_X, data.train_y) if data.train_X is not None and options.finetune_epochs else None
            pruning = timed("pruning", lambda: pruning_sweep(
                module, X, y, sparsities=options.sparsities, scopes=options.pruning_scopes,
                dead_masks=dead or None, finetune=finetune, finetune_epochs=options.finetune_epochs))
            found += F.pruning_findings(pruning)
    training = None
    if history is not None and "training" in wanted and history.epochs_run:
        training = training_diagnostics(history)
        found += F.training_findings(training)
    return Analysis(
        model=info, data=data_info, parameters=parameters, weights=weights, activations=census, deaths=deaths,
        importance=importance, pruning=pruning, training=training, findings=tuple(found),
        timings=timings, package_version=__version__,
    )


def analyze_weights_file(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Analysis:
    """Weight-only analysis of any file with 2-D weights (e.g. a transformer's MLP blocks).

    Nothing is rebuilt and nothing runs: parameter counts come from the header
    (:func:`inspector.inventory.read_inventory`) and each weight is read, summarised
    and dropped one tensor at a time, so a file larger than memory can be inspected.
    """
    from inspector.analysis.parameters import LayerParameters, OtherParameters
    from inspector.inventory import count_nonfinite, iter_tensors, read_inventory
    from inspector.validation import printable  # names in the file are data; they reach a terminal

    started = time.perf_counter()
    inventory = read_inventory(path, trust_pickle=trust_pickle)
    if not inventory.linear_layers:
        raise InspectorError(f"{path}: no 2-D weight tensors found; nothing dense to analyse")
    layers = tuple(
        LayerParameters(name=printable(l.name), in_features=l.in_features, out_features=l.out_features, weights=l.weights,
                        biases=l.biases, parameters=l.parameters, trainable=True, bytes=l.nbytes,
                        macs_per_sample=l.in_features * l.out_features, dtype=l.dtype,
                        tied_to=printable(l.tied_to) if l.tied_to else None)
        for l in inventory.linear_layers)
    others = tuple(OtherParameters(name=printable(t.name), kind="tensor", parameters=t.numel, trainable=True)
                   for t in inventory.other_tensors if t.tied_to is None)
    linear_total = sum(l.parameters for l in layers)
    other_total = sum(o.parameters for o in others)
    parameters = ParameterReport(
        layers=layers, other=others, linear_parameters=linear_total, other_parameters=other_total,
        total_parameters=linear_total + other_total, trainable_parameters=linear_total + other_total,
        total_bytes=sum(t.nbytes for t in inventory.tensors if t.tied_to is None),
        macs_per_sample=sum(l.macs_per_sample for l in layers))
    from inspector.analysis.weights import layer_weights

    names = {t.name for t in inventory.tensors}
    # (layer, weight key, bias key): a bare 2-D tensor is its own weight key
    plan = [(layer, f"{layer.name}.weight" if f"{layer.name}.weight" in names else layer.name,
             f"{layer.name}.bias" if layer.biases else None) for layer in inventory.linear_layers]
    # one pass over the file, in plan order: each weight (and bias) is summarised and dropped before the next
    stream = iter_tensors(path, [k for _, w, b in plan for k in (w, b) if k], trust_pickle=trust_pickle)
    weights, nonfinite = [], []
    for layer, weight_key, bias_key in plan:
        weight = next(stream)[1]
        bias = next(stream)[1] if bias_key else None
        for key, t in ((weight_key, weight), (bias_key, bias)):
            if t is not None and count_nonfinite(t):
                nonfinite.append(printable(key))
        weights.append(layer_weights(printable(layer.name), weight, bias))
    info = ModelInfo(
        source=str(path), architecture=f"{len(layers)} dense layers (weight-only)", layer_sizes=(),
        activation=None, batch_norm=False, dropout=0.0, feature_names=(), class_names=(), image_shape=None,
        blocks=tuple((l.name, "none") for l in layers), nonfinite=tuple(nonfinite))
    found = F.parameter_findings(parameters) + F.weight_findings(tuple(weights))
    found += [F.Finding("weights", "warning", f"{name} holds NaN or Inf values", {}) for name in nonfinite]
    return Analysis(model=info, data=None, parameters=parameters, weights=tuple(weights), activations=None,
                    deaths=None, importance=None, pruning=None, training=None, findings=tuple(found),
                    timings={"weights": time.perf_counter() - started}, package_version=__version__)


def _looks_like_report(path: Path) -> bool:
    import json

    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "schema_version" in doc and "result" in doc


def analyze_path(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    label_column: str | None = None,
    activation: str | None = None,
    trust_pickle: bool = False,
    options: AnalysisOptions | None = None,
    notify: Any = None,
    device: torch.device | None = None,
) -> tuple[Analysis, Checkpoint | None, EvalData | None]:
    """What a user named, as an analysis: a saved analysis (folder or JSON report) is read back;
    a checkpoint (``RUN.pt@EPOCH`` for a weight snapshot) is loaded and analysed on its data;
    a file whose weights do not rebuild as an MLP gets a weight-only analysis.

    Returns the analysis and, for a checkpoint, the checkpoint and evaluation data (which
    on-demand views need). ``notify(message)`` receives the loader's notices.
    """
    from inspector.checkpoints import load
    from inspector.evaluation import eval_data_for
    from inspector.formats import check_not_sharded_index
    from inspector.results import JSON_NAME

    path = Path(path)
    if path.is_dir() and (path / JSON_NAME).exists():
        return Analysis.load(path), None, None
    if path.is_file() and path.suffix.lower() == ".json":
        check_not_sharded_index(path)
        try:
            return Analysis.load(path), None, None
        except InspectorError:
            if _looks_like_report(path):
                raise  # a report, but a damaged or newer one: its own message says which
            raise InspectorError(
                f"{path}: not a dense-inspector JSON report (expected the file `inspector report --format json` "
                "writes, or a sharded-checkpoint index); pass a checkpoint (.pt, .safetensors), an analysis "
                "folder or such a report") from None
    epoch = None
    if not path.exists() and "@" in path.name:  # run.pt@5: the run's weights at the end of epoch 5
        stem, _, suffix = str(path).rpartition("@")
        if not suffix.isdigit():
            raise InspectorError(f"{path}: after '@' give an epoch number, e.g. run.pt@5")
        path, epoch = Path(stem), int(suffix)
    try:
        ckpt = load(path, activation=activation, trust_pickle=trust_pickle)
    except NotAnMLPError as exc:
        if epoch is not None or data is not None:
            raise
        if notify is not None:
            notify(f"{exc}; analysing its weights only")
        return analyze_weights_file(path, trust_pickle=trust_pickle), None, None
    if epoch is not None:
        ckpt = ckpt.at_epoch(epoch)
    for notice in ckpt.notices:
        if notify is not None:
            notify(notice)
    if device is not None:
        ckpt.model.to(device)
    eval_data = eval_data_for(ckpt, data, label_column=label_column)
    return analyze(ckpt, eval_data, options=options), ckpt, eval_data


__all__ = ["Analysis", "AnalysisOptions", "DataInfo", "ModelInfo", "SECTIONS", "analyze", "analyze_path",
           "analyze_weights_file"]


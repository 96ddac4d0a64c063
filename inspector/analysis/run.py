"""Run every requested section on a model and its data: :func:`analyze`.

Weight-only sections (parameters, weights, training diagnostics) run without
data; the data sections (activations, importance, pruning) need evaluation
data. The model is never changed: eval mode inside, ``training`` and
``requires_grad`` restored, hooks removed, pruning on a copy.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from inspector._version import __version__
from inspector.analysis import findings as F
from inspector.analysis.activations import activation_census, death_timeline
from inspector.analysis.diagnostics import training_diagnostics
from inspector.analysis.guard import inspecting
from inspector.analysis.importance import importance_report
from inspector.analysis.options import AnalysisOptions
from inspector.analysis.parameters import count_parameters, linear_layers
from inspector.analysis.pruning import pruning_sweep
from inspector.analysis.result import Analysis, DataInfo, ModelInfo
from inspector.analysis.weights import weight_report
from inspector.checkpoints import Checkpoint
from inspector.errors import InspectorError
from inspector.evaluation import EvalData
from inspector.training import History, evaluate

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

"""Run every requested section on a model and its data: :func:`analyze`.

Weight-only sections (parameters, weights, training diagnostics) run without
data; the data sections (activations, importance, pruning) need evaluation
data. The model is never changed: eval mode inside, ``training`` and
``requires_grad`` restored, hooks removed, pruning on a copy.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector._version import __version__
from inspector.analysis import distributed
from inspector.analysis import findings as F
from inspector.analysis.activations import activation_census, death_timeline
from inspector.analysis.diagnostics import training_diagnostics
from inspector.analysis.guard import inspecting
from inspector.analysis.importance import importance_report
from inspector.analysis.inputs import Batch, DataSource, InputAdapter, as_source, floating_dtype, make_adapter
from inspector.analysis.options import AnalysisOptions
from inspector.analysis.parameters import count_parameters, linear_layers
from inspector.analysis.precision import CHECK_SAMPLES, dtype_findings, forward_model, is_reduced, torch_dtype
from inspector.analysis.pruning import pruning_sweep
from inspector.analysis.result import Analysis, DataInfo, ModelInfo
from inspector.analysis.sites import Site, discover_sites
from inspector.analysis.task import Metric, Target, Task, evaluate_task, make_task, output_tensor
from inspector.analysis.weights import flattened_maps, weight_report
from inspector.analysis.whatif import importance_ranking, partial_dependence, whatif_findings
from inspector.checkpoints import Checkpoint
from inspector.errors import InspectorError
from inspector.evaluation import EvalData
from inspector.models import MLPConfig
from inspector.training import History


def _blocks(sites: tuple[Site, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((site.layer, site.activation if site.activation != "unknown" else "none") for site in sites)


def _class_names(output: Any, task: Task | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """The name of each output for a classifier (the data's, else ``"0"`` .. ``"C-1"``); none otherwise.

    ``output``: the model's output on the first batch (:func:`_first_output`)."""
    if task is None or task.kind != "classification" or output is None:
        return known
    width = int(output_tensor(output).shape[-1])
    if known and len(known) == width:
        return known
    return tuple(str(c) for c in range(width))


def _model_info(
    module: nn.Module,
    ckpt: Checkpoint | None,
    source: DataSource | None,
    output: Any,
    adapter: InputAdapter | None,
    task: Task | None,
    sites: tuple[Site, ...],
) -> ModelInfo:
    layers = linear_layers(module)
    config = getattr(module, "config", None) if ckpt is None else ckpt.config
    if not isinstance(config, MLPConfig):
        config = None
    sizes = tuple([layers[0][1].in_features] + [layer.out_features for _, layer in layers]) if layers else ()
    ds = ckpt.dataset if ckpt is not None else None
    if adapter is not None:
        features = adapter.feature_names
        known_classes = source.class_names if source is not None else ()
        image_shape = source.image_shape if source is not None else None
    else:
        features = ds.feature_names if ds else tuple(f"x{i}" for i in range(sizes[0] if sizes else 0))
        known_classes = ds.class_names if ds else tuple(str(c) for c in range(sizes[-1] if sizes else 0))
        image_shape = ds.image_shape if ds else None
    if config is not None:
        arch = f"MLP {'-'.join(map(str, config.layer_sizes))} ({config.activation})"
    else:
        arch = type(module).__name__
    return ModelInfo(
        source=ckpt.source if ckpt else "<model>",
        architecture=arch,
        layer_sizes=sizes,
        activation=config.activation if config else None,
        batch_norm=bool(config.batch_norm) if config else False,
        dropout=float(config.dropout) if config else 0.0,
        feature_names=tuple(features),
        class_names=_class_names(output, task, tuple(known_classes)),
        image_shape=image_shape,
        blocks=_blocks(sites),
        # from the module itself: a rebuilt foreign model renames the file's keys
        nonfinite=tuple(
            name
            for name, t in module.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ),
        sites=sites,
        embeddings=tuple(name for name, m in module.named_modules() if isinstance(m, nn.Embedding)),
        modules=tuple((name, type(m).__name__) for name, m in module.named_modules()),
        task=task.kind if task is not None else "classification",
        target=_target_text(task, output),
        input_kind=adapter.kind if adapter is not None else "features",
        input_shape=adapter.sample_shape if adapter is not None else ((sizes[0],) if sizes else ()),
    )


def _target_text(task: Task | None, output: Any = None) -> str:
    if task is None or task.kind == "classification" and task.target_fn is None:
        return "the true class's logit"
    if task.target_fn is not None:
        return "the target= function's value"
    width = int(math.prod(output_tensor(output).shape[1:])) if output is not None else 1
    return f"the mean of the model's {width} outputs" if width > 1 else "the model's output"


def _text_labels(data: Any) -> None:
    """Refuse text labels in ``(X, y)`` data, before they reach a tensor."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return
    labels = data[1]
    dtype = getattr(labels, "dtype", None)
    text = isinstance(dtype, np.dtype) and dtype.kind in "USO" and len(labels) and isinstance(labels[0], (str, bytes))
    if text or isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], str):
        raise InspectorError(
            "the labels are text; give one integer class number per sample, e.g. "
            "classes, y = np.unique(labels, return_inverse=True)"
        )


def _first_output(module: nn.Module, first: Batch) -> Any:
    """The model's output on the first batch: the one guarded forward, whose failure is one line."""
    try:
        with inspecting(module), torch.no_grad():
            return first.call(module)
    except InspectorError:
        raise
    except Exception as error:
        lines = str(error).strip().splitlines()
        raise InspectorError(
            f"the model could not run on the first batch ({type(error).__name__}: {lines[0] if lines else ''}): "
            "check that the data's inputs match what forward expects (shape, dtype, keyword names)"
        ) from error


def _device(module: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _dtype_check(
    module: nn.Module, runner: nn.Module, whole: DataSource, sites: tuple[Site, ...], options: AnalysisOptions
) -> list[F.Finding]:
    """Findings where the reduced-dtype forward changes a dead count: ``runner`` (the cast copy) and ``module``
    (float32) counted on the same first :data:`CHECK_SAMPLES` samples, so that the comparison is like for like."""
    head = whole.limited(CHECK_SAMPLES)
    threshold = options.nearly_dead_threshold
    reduced = activation_census(
        runner, head.on(head.device, torch_dtype(options.dtype)), sites, nearly_dead_threshold=threshold, keep_samples=0
    )
    exact = activation_census(module, head, sites, nearly_dead_threshold=threshold, keep_samples=0)
    n = reduced[0].n_samples if reduced else 0
    return dtype_findings(options.dtype, reduced, exact, n)


def analyze(
    model: nn.Module | Checkpoint,
    data: Any = None,
    *,
    task: str | None = None,
    target: Target | None = None,
    metric: Metric | None = None,
    metric_name: str | None = None,
    tokenizer: Any = None,
    vocabulary: Sequence[str] | None = None,
    activations: Mapping[str, str] | None = None,
    feature_names: Sequence[str] | None = None,
    history: History | None = None,
    snapshots: dict[int, dict[str, torch.Tensor]] | None = None,
    options: AnalysisOptions | None = None,
) -> Analysis:
    """Analyse the dense layers of ``model`` (any ``nn.Module``, or a loaded :class:`~inspector.checkpoints.Checkpoint`).

    Args:
        model: any module with ``nn.Linear`` layers, anywhere in it.
        data: evaluation data: ``(X, y)`` arrays or tensors, a tensor ``X``, an
            :class:`~inspector.evaluation.EvalData`, a ``torch.utils.data.Dataset``, a
            ``DataLoader`` or a list of batches; a batch is a tensor, ``(inputs, labels)`` or a
            dict of ``forward`` keyword arguments (``labels`` and ``attention_mask`` keys are
            understood). Streamed, never gathered. Without it only the weight-only sections run.
        task: ``"classification"`` (explain the true class's logit; accuracy),
            ``"regression"`` (explain the output; MSE and R²) or ``"custom"``; inferred when
            omitted (float labels: regression; ``target=`` given: custom).
        target: ``target(output, batch) -> (n,)``, the scalar per sample to explain.
        metric: ``metric(output, batch)``, per-sample values or a batch mean, for evaluation and
            pruning (``metric_name`` names it).
        tokenizer, vocabulary: token text for integer inputs (``convert_ids_to_tokens``, or a list);
            an error with float inputs.
        activations: ``{linear layer path: activation}`` for layers whose activation cannot be
            found from the model (see :mod:`inspector.analysis.sites`).
        feature_names: one name per input column of ``(n, d)`` float inputs.
        history, snapshots: training history and ``{epoch: state_dict}``; taken from
            the checkpoint when ``model`` is one.
        options: which sections and how; see :class:`AnalysisOptions`.

    Inside an initialised ``torch.distributed`` process group each rank reads its own share of ``data``
    (every N-th batch, or the share its ``DistributedSampler`` gives it), the census, evaluation and
    pruning sums are merged exactly, and every rank returns the same :class:`Analysis`; write it from
    rank 0 only (:func:`~inspector.analysis.distributed.is_writer`). See docs/scaling.md.
    """
    options = options or AnalysisOptions()
    ckpt = model if isinstance(model, Checkpoint) else None
    module: nn.Module = ckpt.model if ckpt is not None else model  # type: ignore[assignment]
    if not isinstance(module, nn.Module):
        raise InspectorError(f"analyze() takes an nn.Module or a loaded checkpoint, not a {type(module).__name__}")
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

    source = whole = first = output = adapter = the_task = None
    # a rank whose data or model fails here stops every rank with its message (no collective waits on it)
    with distributed.together("reading the first batch"):
        if data is not None:
            _text_labels(data)
            whole = as_source(
                data, batch_size=options.batch_size, device=_device(module, None), dtype=floating_dtype(module)
            ).limited(options.max_samples)
            # inside a process group the census, evaluation and pruning read one share per rank and merge;
            # the bounded-sample sections (importance, what-if) read the same head of ``whole`` on every rank
            source = distributed.shard(whole, data)
            first = whole.first()
            if (tokenizer is not None or vocabulary is not None) and first.inputs.is_floating_point():
                raise InspectorError(
                    "tokenizer= and vocabulary= apply only to integer token-id inputs and these inputs are float; "
                    "leave them out"
                )
            output = _first_output(module, first)
            names = feature_names or source.feature_names
            adapter = make_adapter(module, first, feature_names=names or (), tokenizer=tokenizer, vocabulary=vocabulary)
            census_only = not wanted & {"importance", "pruning"}
            if census_only and task is None and target is None and first.labels is None:
                the_task = None  # no labels and nothing to explain: the census needs neither
            else:
                the_task = make_task(task, first, target=target, metric=metric, metric_name=metric_name, output=output)
        elif task is not None or target is not None:
            raise InspectorError("task= and target= need data to evaluate; pass data as well")
        with inspecting(module):
            sites = timed("sites", lambda: discover_sites(module, first, activations))
    info = dataclasses.replace(_model_info(module, ckpt, source, output, adapter, the_task, sites), dtype=options.dtype)
    del output  # the first batch's output: only the class names and the task needed it
    parameters = timed("parameters", lambda: count_parameters(module))
    weights = None
    if "weights" in wanted:
        # the (C, H, W) map a CNN head's first dense layer reads, for its neuron images
        maps = flattened_maps(module, first) if first is not None else None
        weights = timed("weights", lambda: weight_report(module, info.image_shape, input_maps=maps))
    found: list[F.Finding] = F.parameter_findings(parameters)
    for name in info.nonfinite:
        found.append(
            F.Finding("weights", "warning", f"{name} holds NaN or Inf values; results that use it are unreliable", {})
        )
    if weights:
        found += F.weight_findings(weights)

    data_info = census = deaths = importance = pruning = whatif = None
    # Evaluated even when --sections leaves out every data section: one pass, and the
    # summary can then say the data was there and the sections were not asked for.
    if source is not None and adapter is not None:
        # the census and evaluation forwards: the model itself, or a copy cast to --dtype with inputs to match
        reduced = is_reduced(options.dtype)
        runner = forward_model(module, options.dtype)
        run_source = source.on(source.device, torch_dtype(options.dtype)) if reduced else source
        if the_task is not None:
            with inspecting(runner):
                loss, score, n = timed("evaluation", lambda: evaluate_task(runner, run_source, the_task))
            data_info = DataInfo(
                source.name, source.split, int(n), score, loss, the_task.kind, the_task.metric_name, the_task.loss_name
            )
        if "activations" in wanted:
            census = timed(
                "activations",
                lambda: activation_census(
                    runner, run_source, sites, nearly_dead_threshold=options.nearly_dead_threshold
                ),
            )
            found += F.activation_findings(census, source.split)
            if reduced and whole is not None:
                found += timed("dtype check", lambda: _dtype_check(module, runner, whole, sites, options))
            if snapshots:
                deaths = timed("deaths", lambda: death_timeline(runner, snapshots, run_source, sites=sites))
                found += F.death_findings(deaths)
        if "importance" in wanted:
            importance = timed(
                "importance",
                lambda: importance_report(
                    module,
                    whole,
                    the_task,
                    adapter,
                    methods=options.methods,
                    n_steps=options.n_steps,
                    max_samples=options.max_importance_samples,
                    with_conductance=options.conductance,
                    sites=sites,
                    sharded=distributed.already_sharded(data),
                ),
            )
            found += F.importance_findings(importance, info.feature_names)
        if "whatif" in wanted and adapter.kind == "features" and the_task is not None:
            ranking = importance_ranking(importance)
            whatif = timed(
                "whatif",
                lambda: partial_dependence(
                    module,
                    whole,
                    task=the_task,
                    feature_names=adapter.feature_names,
                    max_samples=options.max_importance_samples,
                    batch_size=options.batch_size,
                    ranking=ranking,
                ),
            )
            found += whatif_findings(whatif)
        if "pruning" in wanted:
            dead = {c.layer: c.dead_mask for c in census or () if c.dead_mask is not None}
            finetune = None
            if isinstance(data, EvalData) and data.train_X is not None and options.finetune_epochs:
                finetune = (data.train_X, data.train_y)
            # fine-tuning trains, and training a bf16 / fp16 copy loses small updates: it stays in float32
            prune_model, prune_source = (module, source) if finetune is not None else (runner, run_source)
            pruning = timed(
                "pruning",
                lambda: pruning_sweep(
                    prune_model,
                    prune_source,
                    the_task,
                    sparsities=options.sparsities,
                    scopes=options.pruning_scopes,
                    dead_masks=dead or None,
                    finetune=finetune,
                    finetune_epochs=options.finetune_epochs,
                    sites=sites,
                ),
            )
            found += F.pruning_findings(pruning)
    training = None
    if history is not None and "training" in wanted and history.epochs_run:
        training = training_diagnostics(history)
        found += F.training_findings(training)
    return Analysis(
        model=info,
        data=data_info,
        parameters=parameters,
        weights=weights,
        activations=census,
        deaths=deaths,
        importance=importance,
        pruning=pruning,
        training=training,
        findings=tuple(found),
        timings=timings,
        package_version=__version__,
        whatif=whatif,
    )

"""What every section of one analysis shares: :class:`AnalysisContext`, built once by :func:`build_context`.

Building it does the work that used to open :func:`~inspector.analysis.analyze`: it checks the model and
the data, reads the first batch and runs the model on it once (under the guard), makes the input adapter
and the task, discovers the sites, makes the reduced-dtype copy the forwards run on (``--dtype``), and
describes the model (:class:`~inspector.analysis.result.ModelInfo`). The sections then only read it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis import distributed
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, DataSource, InputAdapter, as_source, floating_dtype, make_adapter
from inspector.analysis.options import AnalysisOptions
from inspector.analysis.parameters import linear_layers
from inspector.analysis.reduced_dtype import forward_model, is_reduced, torch_dtype
from inspector.analysis.result import ModelInfo
from inspector.analysis.sites import Site, discover_sites
from inspector.analysis.task import Metric, Target, Task, make_task, output_tensor
from inspector.checkpoints import Checkpoint
from inspector.core.adapters import adapter_class
from inspector.core.dense import in_features, out_features
from inspector.errors import InspectorError
from inspector.models import MLPConfig
from inspector.records import EvalData, History

# the sections that need the task (labels or a target); without them and without labels the census runs alone
_TASK_SECTIONS = frozenset({"importance", "pruning"})
# the first batch's samples the model is first run on (output form, input adapter, sites): a transformer's
# first batch may be all 512 sentences, and three forwards over it cost three census passes (2 samples, as the Monitor)
PROBE_SAMPLES = 2


@dataclass(frozen=True)
class AnalysisContext:
    """One analysis's model, data and settings, shared read-only by every section.

    ``module``: the model analysed (``checkpoint.model`` for a checkpoint); ``checkpoint``: the loaded
    checkpoint, else ``None``. ``whole``: the evaluation data, cut to ``options.max_samples``;
    ``source``: this rank's share of it inside a process group (else ``whole``): the census, evaluation
    and pruning read ``source`` and merge across ranks, the bounded-sample sections (importance, what-if)
    read the head of ``whole`` on every rank. ``first``: the first batch of ``whole``. ``runner`` /
    ``run_source``: the module and data the census, evaluation and pruning forwards run (a copy cast to
    ``options.dtype`` and the data cast to match, or ``module`` / ``source`` themselves in fp32).
    ``already_sharded``: the caller's data hands each rank its own share (a ``DistributedSampler``).
    ``train_split``: ``(train_X, train_y)`` of an :class:`~inspector.evaluation.EvalData` that has them,
    for pruning's fine-tuning. ``info``: the model's description (from the first batch's output, which
    is not kept: on a language model it is the largest tensor of the analysis). Every data field is
    ``None`` without data. ``timings``: seconds per timed step, filled by :meth:`timed`.
    """

    module: nn.Module
    checkpoint: Checkpoint | None
    options: AnalysisOptions
    info: ModelInfo
    sites: tuple[Site, ...]
    whole: DataSource | None = None
    source: DataSource | None = None
    first: Batch | None = None
    adapter: InputAdapter | None = None
    task: Task | None = None
    runner: nn.Module | None = None
    run_source: DataSource | None = None
    already_sharded: bool = False
    train_split: tuple[Any, Any] | None = None
    history: History | None = None
    snapshots: Mapping[int, Mapping[str, torch.Tensor]] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def reduced(self) -> bool:
        """The forwards run on a copy cast to a reduced dtype (``bf16`` / ``fp16``)."""
        return is_reduced(self.options.dtype)

    def wants(self, section: str) -> bool:
        """``section`` is among the sections the options ask for."""
        return section in self.options.sections

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Record the seconds the ``with`` body takes as ``timings[name]``."""
        started = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - started


def build_context(
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
) -> AnalysisContext:
    """The context of one analysis of ``model`` on ``data``; the arguments are :func:`~inspector.analysis.analyze`'s.

    Raises :class:`~inspector.errors.InspectorError` for a model without ``nn.Linear`` layers, text labels,
    ``tokenizer=`` with float inputs, ``task=`` / ``target=`` without data, or a model that cannot run on
    the first batch; inside a process group a rank that fails here stops every rank with its message."""
    options = options or AnalysisOptions()
    ckpt = model if isinstance(model, Checkpoint) else None
    module: nn.Module = ckpt.model if ckpt is not None else model  # type: ignore[assignment]
    if not isinstance(module, nn.Module):
        raise InspectorError(f"analyze() takes an nn.Module or a loaded checkpoint, not a {type(module).__name__}")
    if ckpt is not None:
        history = history or ckpt.history
        snapshots = snapshots or ckpt.snapshots
    if not linear_layers(module):
        raise InspectorError("the model has no dense (nn.Linear or Conv1D) layers; nothing dense to analyse")
    timings: dict[str, float] = {}
    source = whole = first = probe = output = adapter = the_task = sites = None
    # a rank whose data or model fails here stops every rank with its message (no collective waits on it)
    with distributed.together("reading the first batch"):
        if data is not None:
            _text_labels(data)
            whole = as_source(
                data, batch_size=options.batch_size, device=_device(module), dtype=floating_dtype(module)
            ).limited(options.max_samples)
            source = distributed.shard(whole, data)
            first = whole.first()
            if (tokenizer is not None or vocabulary is not None) and not adapter_class(first.inputs).features_are_ids:
                raise InspectorError(
                    "tokenizer= and vocabulary= apply only to integer token-id inputs and these inputs are float; "
                    "leave them out"
                )
            started = time.perf_counter()
            probe, output, sites = _first_output(module, first, activations)
            timings["sites"] = time.perf_counter() - started
            names = feature_names or source.feature_names
            adapter = make_adapter(module, probe, feature_names=names or (), tokenizer=tokenizer, vocabulary=vocabulary)
            census_only = not set(options.sections) & _TASK_SECTIONS
            if census_only and task is None and target is None and first.labels is None:
                the_task = None  # no labels and nothing to explain: the census needs neither
            else:
                the_task = make_task(task, first, target=target, metric=metric, metric_name=metric_name, output=output)
        elif task is not None or target is not None:
            raise InspectorError("task= and target= need data to evaluate; pass data as well")
        if sites is None:  # no data: the graph and the declared activations only
            with inspecting(module):
                started = time.perf_counter()
                sites = discover_sites(module, None, activations)
                timings["sites"] = time.perf_counter() - started
    info = model_info(module, ckpt, source, output, adapter, the_task, sites, options.dtype)
    del output  # only the class names, the target text and the task needed it
    runner = run_source = None
    if source is not None:
        # the census and evaluation forwards: the model itself, or a copy cast to --dtype with inputs to match
        runner = forward_model(module, options.dtype)
        run_source = source.on(source.device, torch_dtype(options.dtype)) if is_reduced(options.dtype) else source
    train_split = None
    if isinstance(data, EvalData) and data.train_X is not None:
        train_split = (data.train_X, data.train_y)
    return AnalysisContext(
        module=module,
        checkpoint=ckpt,
        options=options.for_inputs(adapter),  # the input kind's defaults where the caller left them unset
        info=info,
        sites=sites,
        whole=whole,
        source=source,
        first=first,
        adapter=adapter,
        task=the_task,
        runner=runner,
        run_source=run_source,
        already_sharded=distributed.already_sharded(data) if data is not None else False,
        train_split=train_split,
        history=history,
        snapshots=snapshots,
        timings=timings,
    )


def model_info(
    module: nn.Module,
    ckpt: Checkpoint | None,
    source: DataSource | None,
    output: Any,
    adapter: InputAdapter | None,
    task: Task | None,
    sites: tuple[Site, ...],
    dtype: str = "fp32",
) -> ModelInfo:
    """What was analysed; ``output``: the model's output on the first batch (for the class names), else ``None``."""
    layers = linear_layers(module)
    config = getattr(module, "config", None) if ckpt is None else ckpt.config
    if not isinstance(config, MLPConfig):
        config = None
    sizes = tuple([in_features(layers[0][1])] + [out_features(layer) for _, layer in layers]) if layers else ()
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
        blocks=tuple((site.layer, site.activation if site.activation != "unknown" else "none") for site in sites),
        # from the module itself: a rebuilt foreign model renames the file's keys
        nonfinite=tuple(name for name, t in module.state_dict().items() if t.is_floating_point() and not _finite(t)),
        sites=sites,
        embeddings=tuple(name for name, m in module.named_modules() if isinstance(m, nn.Embedding)),
        modules=tuple((name, type(m).__name__) for name, m in module.named_modules()),
        task=task.kind if task is not None else "classification",
        target=_target_text(task, output),
        input_kind=adapter.kind if adapter is not None else "features",
        input_shape=adapter.sample_shape if adapter is not None else ((sizes[0],) if sizes else ()),
        dtype=dtype,
    )


def _class_names(output: Any, task: Task | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """The name of each output for a classifier (the data's, else ``"0"`` .. ``"C-1"``); none otherwise."""
    if task is None or task.kind != "classification" or output is None:
        return known
    width = int(output_tensor(output).shape[-1])
    if known and len(known) == width:
        return known
    return tuple(str(c) for c in range(width))


def _target_text(task: Task | None, output: Any = None) -> str:
    if task is None or task.kind == "classification" and task.target_fn is None:
        return "the true class's logit"
    if task.target_fn is not None:
        return "the target= function's value"
    if task.kind == "causal-lm":
        return "the log-probability of the actual next tokens (summed per sequence)"
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


def _first_output(
    module: nn.Module, first: Batch, declared: Mapping[str, str] | None
) -> tuple[Batch, Any, tuple[Site, ...]]:
    """``(probe, output, sites)``: the model's output on the probe, the first :data:`PROBE_SAMPLES`
    samples of the first batch (the first batch itself for a model that cannot run on fewer rows), and
    the sites found on that one guarded forward pass, whose failure is one line. The output's form, the
    input adapter and the sites are found on the probe: a forward over a few rows, not over the first
    batch (which may be all the data)."""

    def observed(batch: Batch) -> tuple[Batch, Any, tuple[Site, ...]]:
        outputs: list[Any] = []
        sites = discover_sites(module, batch, declared, outputs=outputs)
        return batch, outputs[0], sites

    if len(first) > PROBE_SAMPLES:
        try:
            return observed(first.rows(slice(0, PROBE_SAMPLES)))
        except Exception:  # noqa: BLE001 - e.g. a fixed batch size: the whole first batch decides below
            pass
    try:
        return observed(first)
    except InspectorError:
        raise
    except Exception as error:
        lines = str(error).strip().splitlines()
        raise InspectorError(
            f"the model could not run on the first batch ({type(error).__name__}: {lines[0] if lines else ''}): "
            "check that the data's inputs match what forward expects (shape, dtype, keyword names)"
        ) from error


def _finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite: its minimum and maximum are (they are NaN when one value is),
    one reduction without a mask as large as ``t`` (a tenth of ``isfinite(t).all()``'s time)."""
    if t.numel() == 0:
        return True
    low, high = torch.aminmax(t.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")

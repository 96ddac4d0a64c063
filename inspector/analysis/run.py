"""Run every requested section on a model and its data: :func:`analyze`.

:func:`analyze` builds the analysis's context once (:func:`~inspector.analysis.context.build_context`:
the model, the data, the adapter, the task, the sites, the reduced-dtype copy, the options) and runs
the registry of sections on it (:mod:`inspector.analysis.sections`), in order; each section is one file
with its computation call and its findings. Weight-only sections (parameters, weights, training
diagnostics) run without data; the data sections (evaluation, activations, importance, what-if,
pruning) need evaluation data. The model is never changed: eval mode inside, ``training`` and
``requires_grad`` restored, hooks removed, pruning on a copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from inspector._version import __version__
from inspector.analysis.context import AnalysisContext, build_context
from inspector.analysis.options import AnalysisOptions
from inspector.analysis.result import Analysis
from inspector.analysis.sections import SectionResults, run_sections, sections
from inspector.analysis.task import Metric, Target
from inspector.checkpoints import Checkpoint
from inspector.records import History


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
        target: ``target(output, batch) -> (n,)``, the scalar per sample to explain; ``batch`` is
            the batch as the data's loader yielded it (a dict, an ``(inputs, labels)`` tuple or a
            tensor), on the model's device.
        metric: ``metric(output, batch)`` (the same ``batch``), per-sample values or a batch mean,
            for evaluation and pruning (``metric_name`` names it).
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
    ctx = build_context(
        model,
        data,
        task=task,
        target=target,
        metric=metric,
        metric_name=metric_name,
        tokenizer=tokenizer,
        vocabulary=vocabulary,
        activations=activations,
        feature_names=feature_names,
        history=history,
        snapshots=snapshots,
        options=options,
    )
    return assemble(ctx, run_sections(ctx))


def assemble(ctx: AnalysisContext, ran: SectionResults) -> Analysis:
    """The :class:`Analysis` of ``ctx`` from what its sections gave: each registered section's result in
    its field (``None`` where it did not run), every finding in run order."""
    fields: dict[str, Any] = {spec.field: ran.results.get(spec.name) for spec in sections() if spec.field is not None}
    return Analysis(
        model=ctx.info,
        findings=ran.all_findings(),
        timings=ctx.timings,
        package_version=__version__,
        **fields,
    )

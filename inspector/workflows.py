"""What the ``inspector`` commands do beyond one library call, as functions a script can call too.

The CLI (:mod:`inspector.cli`) maps its arguments onto these and prints what they return;
nothing here prints or reads ``argparse`` arguments.

* :func:`prune_checkpoint` / :func:`prune_model`: a pruned copy and its metric before and after;
* :func:`read_runs` and :func:`newest_snapshot_analysis`: what a run report shows;
* :func:`input_files` and :func:`check_new_run_dir`: what a command must never overwrite;
* :func:`open_text_model` and :func:`analyze_text`: a Hugging Face model folder on a text file.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inspector.analysis import Analysis, AnalysisOptions, analyze
from inspector.analysis.inputs import as_source
from inspector.analysis.parameters import count_parameters
from inspector.analysis.pruning import prune, prune_and_finetune
from inspector.analysis.reduced_dtype import forward_model, torch_dtype
from inspector.analysis.shrink import Shrunk, model_size, shrink_and_finetune
from inspector.analysis.task import Target, Task, task_for_labels
from inspector.analysis.text_targets import CAUSAL_LM, named_target, text_task, wants_hidden_states
from inspector.analysis.weights_file import analyze_weights_file
from inspector.checkpoints import Checkpoint
from inspector.core.dense import out_features
from inspector.core.evaluator import evaluate_arrays, metric_key
from inspector.errors import InspectorError
from inspector.evaluation import EvalData, evaluate_model
from inspector.factories import FactoryRun, is_factory_spec, load_factory, user_code
from inspector.fileio import first_non_folder
from inspector.live.store import RunHistory, is_run, read_run
from inspector.model_folder import ModelFolder, load_model_folder
from inspector.models import MLP, MLPConfig, build_mlp
from inspector.results import result_files
from inspector.text_data import DEFAULT_MAX_LENGTH, DEFAULT_TEXT_BATCH, TextFile

DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class PruneOutcome:
    """A pruned copy of a model and what pruning cost.

    ``metric_before`` / ``metric_after``: the task's metric (accuracy, R²) of the model and of
    the pruned copy on the same samples, ``None`` without data; with fine-tuning, ``metric_pruned``
    is the pruned copy's before its ``finetune_epochs`` epochs. Where the pruned neurons were taken
    out (the neuron scope of a checkpoint, :func:`~inspector.analysis.shrink.shrink_model`):
    ``size_before`` / ``size_after`` as ``(parameters, bytes)``, ``widths`` ``{layer: (neurons
    before, after)}``, and ``kept_masked`` one line per layer whose neurons could only be zeroed.
    """

    model: nn.Module
    sparsity: float
    scope: str
    nonzero_parameters: int
    total_parameters: int
    metric_name: str | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    metric_pruned: float | None = None
    finetune_epochs: int = 0
    n_samples: int | None = None
    size_before: tuple[int, int] | None = None
    size_after: tuple[int, int] | None = None
    widths: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    kept_masked: tuple[str, ...] = ()


def check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity < 1:
        raise InspectorError(f"--sparsity must be in [0, 1), got {sparsity}")


def _nonzero(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def prune_checkpoint(
    ckpt: Checkpoint,
    sparsity: float,
    scope: str = "global",
    *,
    data: EvalData | None = None,
    finetune_epochs: int = 0,
    dtype: str = "fp32",
) -> tuple[Checkpoint, PruneOutcome]:
    """Prune an MLP checkpoint's model (a copy) and score it before and after on ``data``.

    Returns the checkpoint to save (the pruned model, no snapshots, the pruning's metrics) and
    the outcome. ``finetune_epochs`` fine-tunes the pruned copy on ``data``'s training split.
    ``dtype``: the forward passes of the scoring (``fp32``, ``bf16``, ``fp16``).

    The neuron scope takes the pruned neurons out (:func:`~inspector.analysis.shrink.shrink_and_finetune`):
    the checkpoint holds the smaller MLP, its config the smaller hidden sizes, and fine-tuning
    trains the smaller model.
    """
    check_sparsity(sparsity)
    config = ckpt.config
    if config is None:
        raise InspectorError(f"{ckpt.source}: only MLP checkpoints can be exported after pruning")
    if finetune_epochs and (data is None or data.train_X is None or data.train_y is None):
        raise InspectorError("fine-tuning needs a training split: use a built-in --data or a model trained on one")
    shrunk = None
    pruned: nn.Module
    if scope == "neuron":
        if finetune_epochs:
            assert data is not None  # checked above
            shrunk = shrink_and_finetune(ckpt.model, sparsity, data.train_X, data.train_y, finetune_epochs)
        else:  # the trace needs one batch of inputs, not its values: the layout of an MLP is fixed
            inputs = data.X[:64] if data is not None else torch.zeros(2, config.input_size)
            shrunk = shrink_and_finetune(ckpt.model, sparsity, inputs, epochs=0)
        config, pruned = _smaller_mlp(config, shrunk)
    elif finetune_epochs:
        assert data is not None and data.train_X is not None
        pruned = prune_and_finetune(ckpt.model, sparsity, scope, data.train_X, data.train_y, finetune_epochs)
    else:
        pruned = prune(ckpt.model, sparsity, scope)
    nonzero = _nonzero(pruned)
    outcome = PruneOutcome(pruned, sparsity, scope, nonzero, count_parameters(pruned).total_parameters)
    if shrunk is not None:
        outcome = dataclasses.replace(
            outcome,
            size_before=model_size(ckpt.model),
            size_after=model_size(pruned),
            widths=shrunk.widths,
            kept_masked=tuple(shrunk.notes()),
        )
    metrics = {"pruned_sparsity": sparsity, "nonzero_parameters": float(nonzero)}
    if data is not None:
        X, y = torch.from_numpy(data.X).to(torch_dtype(dtype)), torch.from_numpy(data.y)
        task = task_for_labels(y)  # the metric under its own name: accuracy, or R² for a regression
        before = evaluate_arrays(forward_model(ckpt.model, dtype), X, y, task).metric
        after = evaluate_arrays(forward_model(pruned, dtype), X, y, task).metric
        metrics[metric_key(task.metric_name)] = after
        outcome = dataclasses.replace(
            outcome, metric_name=task.metric_name, metric_before=before, metric_after=after, n_samples=len(y)
        )
        if finetune_epochs:  # what fine-tuning recovered: the same pruning, not fine-tuned
            unfinetuned = prune(ckpt.model, sparsity, scope)
            pruned_only = evaluate_arrays(forward_model(unfinetuned, dtype), X, y, task).metric
            outcome = dataclasses.replace(outcome, metric_pruned=pruned_only, finetune_epochs=finetune_epochs)
    return dataclasses.replace(ckpt, model=pruned, config=config, snapshots={}, metrics=metrics), outcome


def _smaller_mlp(config: MLPConfig, shrunk: Shrunk) -> tuple[MLPConfig, MLP]:
    """The config with the shrunk hidden widths and an :class:`MLP` built from it holding the shrunk
    weights (so the checkpoint rebuilds through the normal loaders)."""
    modules = dict(shrunk.model.named_modules())
    hidden = tuple(out_features(modules[name]) for name in config.linear_names[:-1])
    smaller = dataclasses.replace(config, hidden_sizes=hidden)
    model = build_mlp(smaller)
    model.load_state_dict(shrunk.model.state_dict())
    return smaller, model.eval()


def prune_model(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    *,
    data: Any = None,
    task: Task | str | None = None,
    dtype: str = "fp32",
    batch_size: int | None = None,
    max_samples: int | None = None,
) -> PruneOutcome:
    """Prune any model (a copy) and score it before and after on ``data`` (anything
    :func:`~inspector.analysis.inputs.as_source` accepts; the first ``max_samples`` only when given).

    ``task``: a :class:`~inspector.analysis.task.Task`, or ``classification`` or ``regression``
    (default: inferred from the labels).
    """
    check_sparsity(sparsity)
    if data is not None and max_samples is not None:
        data = as_source(data, batch_size=batch_size or DEFAULT_BATCH_SIZE).limited(max_samples)
    pruned = prune(model, sparsity, scope, data=data)
    outcome = PruneOutcome(pruned, sparsity, scope, _nonzero(pruned), count_parameters(pruned).total_parameters)
    if data is None:
        return outcome
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    before = evaluate_model(forward_model(model, dtype), data, task, batch_size=batch_size)
    after = evaluate_model(forward_model(pruned, dtype), data, task, batch_size=batch_size)
    return dataclasses.replace(
        outcome,
        metric_name=before.metric_name,
        metric_before=before.metric,
        metric_after=after.metric,
        n_samples=before.n_samples,
    )


def read_runs(paths: Sequence[Path], where: str | os.PathLike[str]) -> tuple[list[RunHistory], list[tuple[Path, str]]]:
    """The runs at ``paths`` that can be read, and ``(path, why)`` for each that cannot.

    Raises when none can: the run's own error for one run, else that none of ``where``'s can.
    """
    histories, skipped = [], []
    for path in paths:
        try:
            histories.append(read_run(path))
        except InspectorError as exc:  # one unreadable run of a folder: the others still report
            skipped.append((path, str(exc)))
    if not histories:  # one line: the run's own error, or that none of the folder's can be read
        if len(skipped) == 1:
            raise InspectorError(skipped[0][1])
        raise InspectorError(f"none of the {len(skipped)} runs in {where} can be read (not run databases)")
    return histories, skipped


def newest_snapshot_analysis(run: RunHistory) -> Analysis | None:
    """The weight-only analysis of ``run``'s newest weight snapshot (``None`` without one)."""
    newest = run.latest_snapshot
    return analyze_weights_file(newest.path) if newest is not None else None


def input_files(*paths: str | os.PathLike[str] | None) -> list[Path]:
    """The files a command reads, which its --force must never replace.

    ``RUN.pt@EPOCH`` reads ``RUN.pt``; an analysis folder, its ``analysis.json`` and arrays.
    """
    files = []
    for given in paths:
        if given is None:
            continue
        path = Path(given)
        if not path.exists() and "@" in path.name:
            path = Path(str(path).rpartition("@")[0])
        files.append(path)
        if path.is_dir():
            files += [p for p in result_files(path) if p is not None]
    return files


def check_new_run_dir(run_dir: Path) -> None:
    """Before training: a run is never overwritten (--force does not apply to it); missing folders are
    created with their parents when the run starts (as the Monitor does), never through a file."""
    if is_run(run_dir):
        raise InspectorError(f"{run_dir} already holds a run; choose a new --run-dir (runs are never overwritten)")
    blocked = first_non_folder(run_dir)
    if blocked is not None:
        raise InspectorError(f"--run-dir {run_dir}: {blocked} is not a folder; choose another run directory")


def text_target(spec: str | None) -> Target | None:
    """What ``--target`` names: one of the named targets (``pooled-norm``, ...), or a function of the
    user's as ``file.py:fn`` / ``pkg.module:fn``: ``fn(out, batch)`` itself, or a function of no
    arguments that returns it."""
    if spec is None:
        return None
    if not is_factory_spec(spec):
        return named_target(spec).function
    function: Any = load_factory(spec, "target")
    try:
        takes_nothing = not any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(function).parameters.values()
        )
    except (TypeError, ValueError):  # a builtin without a signature: take it as the target
        takes_nothing = False
    if takes_nothing:
        with user_code(f"--target {spec}"):
            function = function()
        if not callable(function):
            raise InspectorError(f"--target {spec}: returned a {type(function).__name__}, not a function (out, batch)")
    return function  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TextModel:
    """A model folder and a text file, ready to analyse: the loaded folder, the file's batches, the task
    and target :func:`analyze` takes."""

    folder: ModelFolder
    data: TextFile
    task: str | None
    target: Target | None


def open_text_model(
    folder: str | os.PathLike[str],
    text: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    target: str | None = None,
    trust_pickle: bool = False,
    device: torch.device | str | None = None,
    notify: Any = None,
) -> TextModel:
    """The model and tokenizer of ``folder`` (:func:`~inspector.model_folder.load_model_folder`), the
    texts of ``text`` (:class:`~inspector.text_data.TextFile`) and what to explain
    (:func:`~inspector.analysis.text_targets.text_task`). ``max_length`` (default 128) is cut to the
    model's longest sequence (said through ``notify`` when it was asked for)."""
    user_target = text_target(target)  # before seconds of loading: a wrong name fails at once
    loaded = load_model_folder(folder, trust_pickle=trust_pickle)
    asked = max_length
    max_length = max_length or DEFAULT_MAX_LENGTH
    if loaded.max_positions is not None and max_length > loaded.max_positions:
        if notify is not None and asked is not None:
            notify(f"--max-length {asked} is longer than {loaded.architecture} takes; using {loaded.max_positions}")
        max_length = loaded.max_positions
    data = TextFile(
        text,
        loaded.tokenizer,
        text_column=text_column,
        label_column=label_column,
        max_length=max_length,
        batch_size=batch_size or DEFAULT_TEXT_BATCH,
        label_ids=loaded.label_ids,
        next_token_labels=loaded.kind == CAUSAL_LM,
        pad_id=loaded.pad_id,
    )
    task, the_target = text_task(loaded.kind, loaded.architecture, data.has_labels, user_target)
    if wants_hidden_states(loaded.model, the_target):  # a masked LM's output holds no last_hidden_state
        loaded.model.config.output_hidden_states = True  # type: ignore[union-attr]
    if device is not None:
        loaded.model.to(device)
    return TextModel(loaded, data, task, the_target)


def analyze_text(
    folder: str | os.PathLike[str],
    text: str | os.PathLike[str],
    *,
    options: AnalysisOptions | None = None,
    **opened: Any,
) -> FactoryRun:
    """``inspector analyze MODEL_DIR --text FILE``: :func:`open_text_model` (``opened``: its keyword
    arguments), then :func:`~inspector.analysis.analyze` with the folder's tokenizer for token text."""
    if options is not None and "batch_size" not in opened and options.batch_size != AnalysisOptions().batch_size:
        opened["batch_size"] = options.batch_size
    run = open_text_model(folder, text, **opened)
    label = f"{folder} with --text {text}"
    with user_code(label):
        texts = as_source(run.data)
        texts.name = run.data.name  # the file's name in the results, not "data"
        analysis = analyze(
            run.folder.model,
            texts,
            task=run.task,
            target=run.target,
            tokenizer=run.folder.tokenizer,
            options=options,
        )
    analysis = dataclasses.replace(analysis, model=dataclasses.replace(analysis.model, source=str(folder)))
    return FactoryRun(analysis, run.folder.model, run.data, run.task, run.folder.tokenizer, label, target=run.target)

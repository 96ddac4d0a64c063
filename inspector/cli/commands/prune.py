"""``inspector prune``: write a magnitude-pruned checkpoint (or --model's state_dict) and its score before and after.

The neuron scope of a checkpoint writes the smaller model: pruned neurons removed, not zeroed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from inspector.analysis import distributed
from inspector.analysis.inputs import as_source
from inspector.analysis.task import make_task
from inspector.checkpoints import checkpoint_suffix, is_own_checkpoint, load, save_checkpoint
from inspector.cli.commands.common import (
    check_out_as_writer,
    check_subject,
    data_factory_given,
    device_for,
    factory_inputs,
    input_files,
    note,
    on_ranks,
    text_given,
)
from inspector.core.evaluator import format_metric
from inspector.errors import InspectorError
from inspector.evaluation import eval_data_for
from inspector.factories import is_own_state_dict, model_from_factory, resolve_data, save_state_dict, user_code
from inspector.fileio import check_writable
from inspector.render.tables import human_bytes
from inspector.workflows import PruneOutcome, check_sparsity, open_text_model, prune_checkpoint, prune_model


def run(args: argparse.Namespace) -> int:
    check_subject(args, args.checkpoint is not None, "a checkpoint")
    return on_ranks(args, lambda: _prune(args))


def _check_out(args: argparse.Namespace, inputs: list[Path], ours: Callable[[Path], bool]) -> None:
    """``--out`` is writable (checked by rank 0 alone under torchrun: the only rank that writes it)."""
    check_out_as_writer(lambda: check_writable(args.out, force=args.force, inputs=inputs, ours=ours))


def _prune(args: argparse.Namespace) -> int:
    if text_given(args):
        return _prune_text_model(args)
    if args.model is not None:
        return _prune_factory_model(args)
    if data_factory_given(args):
        raise InspectorError("prune of a checkpoint reads built-in or file --data; a --data factory goes with --model")
    _check_out(args, input_files(args.checkpoint, args.data), is_own_checkpoint)
    checkpoint_suffix(args.out)
    check_sparsity(args.sparsity)
    ckpt = load(args.checkpoint, activation=args.activation, trust_pickle=args.trust_pickle)
    for notice in ckpt.notices:
        note(notice)
    if ckpt.config is None:
        raise InspectorError(f"{args.checkpoint}: only MLP checkpoints can be exported after pruning")
    data = eval_data_for(ckpt, args.data, label_column=args.label_column)
    pruned, outcome = prune_checkpoint(
        ckpt, args.sparsity, args.scope, data=data, finetune_epochs=args.finetune_epochs, dtype=args.dtype
    )
    for reason in outcome.kept_masked:
        note(reason)
    line = _pruned_line(outcome)
    if data is not None:
        line += f"; {data.name} {data.split} {_scores(outcome)}" + _dtype_note(args.dtype)
    if not distributed.is_writer():  # every rank pruned the same model; rank 0 writes it
        return 0
    save_checkpoint(pruned, args.out, force=args.force)
    print(line)
    if outcome.size_before is not None and outcome.size_after is not None:
        print(_size_line(outcome.size_before, outcome.size_after))
    print(f"saved {args.out}")
    return 0


def _prune_factory_model(args: argparse.Namespace) -> int:
    """prune --model: the user's model pruned, its state_dict() written; the metric before -> after on --data."""
    _check_out(args, input_files(*factory_inputs(args)), lambda p: is_own_state_dict(p) or is_own_checkpoint(p))
    checkpoint_suffix(args.out)
    check_sparsity(args.sparsity)
    if args.finetune_epochs:
        raise InspectorError("--finetune-epochs needs a dense-inspector checkpoint; for --model fine-tune in your code")
    if args.activations is not None or args.tokenizer is not None:
        raise InspectorError("--activations and --tokenizer apply to analyze, report and dashboard, not prune")
    model = model_from_factory(args.model, args.weights, trust_pickle=args.trust_pickle)
    device = device_for(args)
    with user_code(f"--model {args.model}"):
        if device is not None:
            model.to(device)
        data = resolve_data(args.data, model, label_column=args.label_column, source=args.model)
        outcome = prune_model(
            model,
            args.sparsity,
            args.scope,
            data=data,
            task=args.task,
            dtype=args.dtype,
            batch_size=args.batch_size,
            max_samples=args.max_samples,
        )
    return _save_pruned(outcome, args)


def _prune_text_model(args: argparse.Namespace) -> int:
    """prune MODEL_DIR --text FILE: the folder's model pruned, its state_dict() written; the metric before ->
    after on the texts (accuracy, perplexity, or the mean --target)."""
    _check_out(
        args,
        input_files(args.checkpoint, *factory_inputs(args)),
        lambda p: is_own_state_dict(p) or is_own_checkpoint(p),
    )
    checkpoint_suffix(args.out)
    check_sparsity(args.sparsity)
    if args.finetune_epochs:
        raise InspectorError(
            "--finetune-epochs needs a dense-inspector checkpoint; fine-tune a model folder in your code"
        )
    run = open_text_model(
        args.checkpoint,
        args.text,
        text_column=args.text_column,
        label_column=args.label_column,
        max_length=args.max_length,
        batch_size=args.batch_size,
        target=args.target,
        trust_pickle=args.trust_pickle,
        device=device_for(args),
        notify=note,
    )
    with user_code(f"{args.checkpoint} with --text {args.text}"):
        task = make_task(run.task, as_source(run.data).first(), target=run.target)
        outcome = prune_model(
            run.folder.model,
            args.sparsity,
            args.scope,
            data=run.data,
            task=task,
            dtype=args.dtype,
            batch_size=args.batch_size,
            max_samples=args.max_samples,
        )
    return _save_pruned(outcome, args)


def _save_pruned(outcome: PruneOutcome, args: argparse.Namespace) -> int:
    """Write the pruned model's state_dict() to ``--out`` and say what was pruned and what it cost."""
    line = _pruned_line(outcome)
    if outcome.metric_name is not None:
        line += f"; {_scores(outcome)} ({outcome.n_samples} samples)" + _dtype_note(args.dtype)
    if not distributed.is_writer():  # every rank pruned the same model; rank 0 writes it
        return 0
    save_state_dict(outcome.model, args.out, force=args.force)
    print(line)
    if outcome.scope == "neuron":
        note(
            "the state_dict keeps the model's shapes (pruned neurons zeroed) so your code loads it; "
            "inspector.shrink(model, keep, data) returns the smaller module"
        )
    print(f"saved {args.out} (the pruned model's state_dict())")
    return 0


def _pruned_line(outcome: PruneOutcome) -> str:
    if outcome.widths:
        removed = sum(before - after for before, after in outcome.widths.values())
        layers = ", ".join(f"{layer} {before} -> {after}" for layer, (before, after) in outcome.widths.items())
        return f"pruned {outcome.sparsity:.0%} (neuron): removed {removed:,} neurons ({layers})"
    return (
        f"pruned {outcome.sparsity:.0%} ({outcome.scope}): {outcome.nonzero_parameters:,} of "
        f"{outcome.total_parameters:,} parameters are nonzero"
    )


def _size_line(before: tuple[int, int], after: tuple[int, int]) -> str:
    return (
        f"size: {before[0]:,} -> {after[0]:,} parameters, {human_bytes(before[1])} -> {human_bytes(after[1])} "
        f"({after[0] / max(1, before[0]):.0%})"
    )


def _scores(outcome: PruneOutcome) -> str:
    name = outcome.metric_name
    assert name is not None and outcome.metric_before is not None and outcome.metric_after is not None
    before, after = format_metric(name, outcome.metric_before), format_metric(name, outcome.metric_after)
    if outcome.metric_pruned is None:
        return f"{name} {before} -> {after}"
    epochs = f"{outcome.finetune_epochs} epoch{'s' if outcome.finetune_epochs != 1 else ''}"
    return f"{name} {before} -> {format_metric(name, outcome.metric_pruned)} pruned -> {after} after {epochs} of fine-tuning"


def _dtype_note(dtype: str) -> str:
    return f" ({dtype} forward)" if dtype != "fp32" else ""

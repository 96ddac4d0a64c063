"""What several commands share: the arguments turned into library calls (the subject, options, device)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from inspector.analysis import AnalysisOptions, analyze_path, distributed
from inspector.checks import printable
from inspector.errors import InspectorError
from inspector.factories import analyze_factory, factory_file, is_data_factory, is_factory_spec
from inspector.formats import sharded_index_path
from inspector.live.store import find_runs
from inspector.results import JSON_NAME
from inspector.training import resolve_device
from inspector.workflows import analyze_text, input_files

__all__ = [
    "analysis_for",
    "check_out_as_writer",
    "check_subject",
    "data_factory_given",
    "device_for",
    "factory_inputs",
    "factory_run",
    "input_files",
    "note",
    "on_ranks",
    "opens_as_analysis",
    "options_for",
    "runs_in",
    "text_given",
    "text_run",
]


def note(message: str) -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):  # under torchrun only rank 0 speaks
        return
    print(f"inspector: note: {printable(message)}", file=sys.stderr)  # may quote names from a file


def analysis_for(path: Path | None, args: argparse.Namespace, options=None):
    """(analysis, model or None) for --model, a saved analysis, a checkpoint or RUN.pt@EPOCH."""
    options = options or options_for(args)
    if text_given(args):  # a Hugging Face model folder on a text file
        assert path is not None  # check_subject asked for it
        run = text_run(path, args, options)
        return run.analysis, run.model
    if path is None:
        run = factory_run(args, options)
        return run.analysis, run.model
    if data_factory_given(args):  # a checkpoint on the user's own data
        run = factory_run(args, options, checkpoint=path)
        return run.analysis, run.model
    analysis, ckpt, _ = analyze_path(
        path,
        data=args.data,
        label_column=args.label_column,
        activation=args.activation,
        trust_pickle=args.trust_pickle,
        options=options,
        notify=note,
        device=device_for(args),
    )
    return analysis, ckpt.model if ckpt is not None else None


def device_for(args: argparse.Namespace):
    return resolve_device(args.device) if getattr(args, "device", None) else None


def on_ranks(args: argparse.Namespace, work: Callable[[], int]) -> int:
    """``work()``, inside the process group when torchrun launched this process (``--nproc_per_node N``: the
    statistics over N shares of the data, rank 0 alone writing), else as it is."""
    if distributed.launched_by_torchrun():
        with distributed.process_group(device_for(args)):
            return work()
    return work()


def check_out_as_writer(check: Callable[[], object]) -> None:
    """``check()`` of ``--out`` on rank 0 alone under torchrun (the only rank that writes it), every rank
    stopping if it fails; in one process, simply ``check()``."""
    with distributed.together("checking --out"):
        if distributed.is_writer():
            check()


def options_for(args: argparse.Namespace, **chosen):
    """AnalysisOptions with --batch-size and --max-samples (when given) on top of ``chosen``."""
    if args.batch_size is not None:
        chosen["batch_size"] = args.batch_size
    if args.max_samples is not None:
        chosen["max_samples"] = args.max_samples
    if getattr(args, "dtype", None) is not None:
        chosen["dtype"] = args.dtype
    return AnalysisOptions(**chosen)


def check_subject(args: argparse.Namespace, given: bool, what: str) -> None:
    """Exactly one of ``what`` (the positional input) and --model; the --model-only options need --model;
    --text needs a model folder and its options need --text."""
    if _check_text(args, given):
        return
    if given and args.model is not None:
        raise InspectorError(f"give {what} or --model {args.model}, not both")
    if args.model is None:
        if not given and args.command != "dashboard":
            raise InspectorError(f"give {what}, or your own model with --model pkg.module:name")
        if args.weights is not None:
            raise InspectorError("--weights applies to --model; a checkpoint carries its own weights")
        for flag, value in (
            ("--task", args.task),
            ("--tokenizer", args.tokenizer),
            ("--activations", args.activations),
        ):
            if value is not None and not data_factory_given(args):
                raise InspectorError(f"{flag} applies to --model or a --data factory")
        if args.command == "dashboard" and not given and data_factory_given(args):
            raise InspectorError("a --data factory needs --model or a checkpoint; the demo has its own data")
    elif args.activation is not None:
        raise InspectorError("--activation is for a checkpoint's state dict; for --model use --activations LAYER=ACT")


def text_given(args: argparse.Namespace) -> bool:
    return getattr(args, "text", None) is not None


def _check_text(args: argparse.Namespace, given: bool) -> bool:
    """The --text options checked; whether this is a --text run (then nothing else needs checking)."""
    if not text_given(args):
        for flag, value in (
            ("--text-column", getattr(args, "text_column", None)),
            ("--max-length", getattr(args, "max_length", None)),
            ("--target", getattr(args, "target", None)),
        ):
            if value is not None:
                raise InspectorError(f"{flag} applies to a model folder read with --text: MODEL_DIR --text FILE")
        return False
    if args.model is not None:
        raise InspectorError("--text reads a model folder: give MODEL_DIR --text FILE, not --model")
    if not given:
        raise InspectorError(
            f"--text {args.text} needs the model folder: inspector {args.command} MODEL_DIR --text FILE"
        )
    if args.data is not None:
        raise InspectorError("give --text FILE or --data, not both")
    for flag, value in (
        ("--weights", args.weights),
        ("--task", args.task),
        ("--tokenizer", args.tokenizer),
        ("--activations", args.activations),
    ):
        if value is not None:
            raise InspectorError(
                f"{flag} does not apply to MODEL_DIR --text: the folder holds the weights and tokenizer"
            )
    return True


def text_run(path: Path, args: argparse.Namespace, options, notify=note):
    """The analysis of the model folder ``path`` on ``--text`` (a FactoryRun)."""
    opened = {
        "text_column": args.text_column,
        "label_column": args.label_column,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "target": args.target,
        "trust_pickle": args.trust_pickle,
        "device": device_for(args),
        "notify": notify,
    }
    return analyze_text(path, args.text, options=options, **opened)


def data_factory_given(args: argparse.Namespace) -> bool:
    return is_data_factory(args.data)


def factory_inputs(args: argparse.Namespace) -> list[str | Path | None]:
    """What a --model run reads besides a checkpoint (never to be overwritten): data, weights, the factories' files."""
    files: list[str | Path | None] = [args.weights]
    if args.model is not None:
        files.append(factory_file(args.model))
    files.append(factory_file(args.data) if data_factory_given(args) else args.data)
    files.append(getattr(args, "text", None))
    target = getattr(args, "target", None)
    files.append(factory_file(target) if target is not None and is_factory_spec(target) else None)
    return files


def factory_run(args: argparse.Namespace, options, checkpoint: Path | None = None, notify=note):
    return analyze_factory(
        args.model,
        args.data,
        checkpoint=checkpoint,
        activation=args.activation,
        notify=notify,
        weights=args.weights,
        trust_pickle=args.trust_pickle,
        label_column=args.label_column,
        task=args.task,
        tokenizer=args.tokenizer,
        activations=args.activations,
        options=options,
        device=device_for(args),
    )


def opens_as_analysis(path: Path) -> bool:
    """Whether the folder ``path`` is an analysis folder or a sharded checkpoint (what analyze_path opens)."""
    return (path / JSON_NAME).exists() or sharded_index_path(path) is not None


def runs_in(path: Path) -> list[Path]:
    """The training runs ``path`` names (a run directory or a folder of runs); empty for anything else."""
    return find_runs(path) if path.is_dir() else []

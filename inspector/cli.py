"""The ``inspector`` command: parses arguments, calls the API, prints results.

User errors (:class:`~inspector.errors.InspectorError`) become one line on
stderr and exit status 1; nothing else lives here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn

from inspector._version import __version__
from inspector.data import MAX_SEED
from inspector.errors import InspectorError
from inspector.models import ACTIVATIONS
from inspector.validation import printable

EXIT_USER_ERROR = 1


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 128,64, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("hidden sizes must be positive")
    return sizes


def _integer(minimum: int, maximum: int | None = None):
    """An argparse type: an int in ``[minimum, maximum]``, refused in one line at parse time."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    return parse


def _real(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True):
    """An argparse type: a finite float in the interval from ``low`` to ``high`` (never NaN or inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"expected a finite number in {interval}, got {text!r}")
        return value

    return parse


# Path("") is Path("."), which would send an empty argument to the current folder.
_EMPTY_PATH = object()


def _path(text: str) -> Path | object:
    return Path(text) if text else _EMPTY_PATH


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: the error and where the usage is, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} (see `{self.prog} --help`)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inspector",
        description="See inside the dense (nn.Linear) layers of a neural network.",
    )
    parser.add_argument("--version", action="version", version=f"dense-inspector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train an MLP and save a checkpoint",
        description="Train an MLP on a built-in or user dataset and save a checkpoint.",
    )
    train.add_argument(
        "--dataset",
        default="digits",
        help="digits, synthetic, synthetic-regression, or a .npz/.csv file (default: digits)",
    )
    train.add_argument("--label-column", help="name of the label (or target) column in a .csv dataset")
    train.add_argument(
        "--task",
        choices=("classification", "regression"),
        default=None,
        help="classification (cross-entropy, accuracy) or regression (one linear output per target, MSE "
        "loss, R²); default: regression when the labels are numbers that are not all whole numbers",
    )
    train.add_argument(
        "--hidden",
        type=_sizes,
        default=(128, 64),
        metavar="SIZES",
        help="hidden layer sizes, comma-separated (default: 128,64)",
    )
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--dropout", type=_real(0, 1), default=0.0, help="dropout probability (default: 0)")
    train.add_argument("--batch-norm", action="store_true", help="batch norm after every hidden layer")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    train.add_argument("--lr", type=_real(0, low_open=True), default=1e-3, help="learning rate (default: 1e-3)")
    train.add_argument("--weight-decay", type=_real(0), default=0.0, help="L2 weight decay (default: 0)")
    train.add_argument("--epochs", type=_integer(1), default=100, help="maximum epochs (default: 100)")
    train.add_argument("--batch-size", type=_integer(1), default=64)
    train.add_argument(
        "--patience",
        type=_integer(0),
        default=10,
        help="early-stopping patience in epochs; 0 turns it off (default: 10)",
    )
    train.add_argument(
        "--snapshot-every",
        type=_integer(1),
        default=None,
        metavar="K",
        help="keep a copy of the weights every K epochs in the checkpoint",
    )
    train.add_argument("--seed", type=_integer(0, MAX_SEED), default=0, help="seed for the split, init and shuffling")
    train.add_argument("--val-fraction", type=_real(0, 1, low_open=True), default=0.15)
    train.add_argument("--test-fraction", type=_real(0, 1, low_open=True), default=0.2)
    train.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    train.add_argument(
        "--out",
        "-o",
        type=_path,
        default=None,
        help="checkpoint to write, .pt or .safetensors (default: DATASET-mlp.pt)",
    )
    train.add_argument(
        "--run-dir",
        type=_path,
        default=None,
        metavar="DIR",
        help="record the dense layers while training into this new run directory (watch it with dashboard DIR)",
    )
    train.add_argument(
        "--every",
        type=_integer(1),
        default=50,
        metavar="N",
        help="with --run-dir: record every N optimizer steps (default: 50)",
    )
    train.add_argument("--force", action="store_true", help="overwrite an existing output file")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    info = sub.add_parser(
        "info",
        help="print a checkpoint's layer table",
        description="List the linear layers and embedding tables of a checkpoint, read "
        "from its header where the format allows. A file does not record "
        "which parameters are trainable, so none is claimed.",
    )
    info.add_argument("checkpoint", type=_path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling Python objects (runs code from the file: trusted files only)",
    )
    analyze = sub.add_parser(
        "analyze",
        help="run every analysis on a checkpoint and save the result",
        description="Analyse a checkpoint: parameters and weights always; activations, feature importance "
        "and pruning when evaluation data is available. Writes DIR/analysis.json and the "
        "arrays file it names (other files in DIR are left alone) and prints a summary.",
    )
    analyze.add_argument("checkpoint", nargs="?", type=_path, help="checkpoint (or give --model)")
    _add_data_arguments(analyze)
    _add_factory_arguments(analyze)
    analyze.add_argument("--out", "-o", type=_path, required=True, metavar="DIR", help="folder to write")
    analyze.add_argument("--force", action="store_true", help="replace an earlier analysis in DIR")
    analyze.add_argument(
        "--sections",
        default=None,
        metavar="LIST",
        help="comma-separated subset of: parameters, weights, activations, importance, "
        "pruning, whatif, training (default: all)",
    )
    analyze.add_argument(
        "--methods", default=None, metavar="LIST", help="comma-separated attribution methods (default: all seven)"
    )
    analyze.add_argument("--steps", type=_integer(1), default=50, help="Integrated Gradients steps (default: 50)")
    analyze.add_argument(
        "--nearly-dead",
        type=_real(0, 1, low_open=True),
        default=0.01,
        metavar="RATE",
        help="firing rate below which a neuron counts as nearly dead (default: 0.01)",
    )
    analyze.add_argument(
        "--finetune-epochs",
        type=_integer(0),
        default=0,
        help="fine-tune each pruned model for this many epochs (needs the training split)",
    )
    analyze.add_argument("--device", default="cpu", help="auto, cpu or cuda (default: cpu)")
    analyze.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help=_DTYPE_HELP)

    prune = sub.add_parser(
        "prune",
        help="export a magnitude-pruned checkpoint",
        description="Zero the smallest weights (or the weakest neurons) of a checkpoint and "
        "save the result as a new checkpoint.",
    )
    prune.add_argument("checkpoint", nargs="?", type=_path, help="checkpoint (or give --model)")
    prune.add_argument("--sparsity", type=_real(0, 1), required=True, help="fraction to prune, 0 <= s < 1")
    prune.add_argument(
        "--scope",
        choices=("global", "layer", "neuron"),
        default="global",
        help="global magnitude ranking, per layer, or whole hidden neurons (default: global)",
    )
    _add_data_arguments(prune)
    _add_factory_arguments(prune, device=True)
    prune.add_argument(
        "--finetune-epochs",
        type=_integer(0),
        default=0,
        help="fine-tune the pruned model on the training split (built-in datasets)",
    )
    prune.add_argument("--out", "-o", type=_path, required=True, help="checkpoint to write (.pt or .safetensors)")
    prune.add_argument("--force", action="store_true", help="overwrite an existing output file")

    report = sub.add_parser(
        "report",
        help="write a report (HTML, Markdown, JSON, PDF or PNG)",
        description="Write a self-contained report for a checkpoint or an analysis folder; with two paths, a "
        "comparison (two epochs, or before and after pruning).",
    )
    report.add_argument(
        "paths",
        nargs="*",
        type=_path,
        metavar="PATH",
        help="checkpoint or analysis folder; a second one makes a comparison; RUN.pt@EPOCH "
        "is a run's weight snapshot at that epoch (or give --model instead)",
    )
    report.add_argument(
        "--out", "-o", type=_path, required=True, help="file to write (.html, .md, .json, .pdf) or, for png, a folder"
    )
    report.add_argument(
        "--format", choices=("html", "md", "json", "pdf", "png"), default=None, help="default: from the --out extension"
    )
    _add_data_arguments(report)
    _add_factory_arguments(report, device=True)
    report.add_argument("--force", action="store_true", help="overwrite an existing output")

    dash = sub.add_parser(
        "dashboard",
        help="serve the interactive dashboard",
        description="Serve the Dash dashboard for a checkpoint or an analysis folder; with no "
        "PATH, the built-in demo (a digits MLP, trained on first use and cached).",
    )
    dash.add_argument(
        "path",
        nargs="?",
        type=_path,
        help="checkpoint, analysis folder, training run directory or folder of runs (default: the demo)",
    )
    _add_data_arguments(dash)
    _add_factory_arguments(dash, device=True)
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    dash.add_argument("--port", type=int, default=8050, help="port (default: 8050)")
    dash.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (repeatable); by default only loopback names "
        "and the --host name are answered, against DNS rebinding. '*' answers any name "
        "(behind a proxy that checks them)",
    )
    dash.add_argument("--debug", action="store_true", help="Dash debug mode (never on a shared network)")
    dash.add_argument(
        "--refresh",
        type=_real(0.2, 3600, high_open=False),
        default=2.0,
        metavar="SECONDS",
        help="how often the Live view re-reads running training runs (default: 2)",
    )
    return parser


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=None,
        metavar="DATA",
        help="digits, synthetic, a .npz/.csv file, or a data factory pkg.module:name or path/to/file.py:name "
        "(a function of yours, called with no arguments, returning (X, y) arrays, a Dataset, a DataLoader "
        "or a list of batches; an existing file or built-in name wins over a factory) (default: the dataset "
        "the model was trained on)",
    )
    p.add_argument("--label-column", help="name of the label column in a .csv file")
    p.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        default=None,
        help="activation of a foreign state dict, which does not store one (default: relu)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling Python objects (runs code from the file: trusted files only)",
    )


_DTYPE_HELP = (
    "the dtype of the census, evaluation and pruning forward passes: fp32 (default, the model as it is), "
    "bf16 or fp16 (a cast copy of the model, as deployed in that dtype; counts still accumulate in float32/64, "
    "and a note says where it changed a dead count on the first 512 samples); importance stays float32. "
    "For GPUs: on a CPU without bf16/fp16 units it is several times slower"
)


def _add_factory_arguments(p: argparse.ArgumentParser, *, device: bool = False) -> None:
    """--model and the options of an analysis of the user's own model (see inspector.factories)."""
    group = p.add_argument_group(
        "your own model",
        "--model and a --data factory IMPORT AND RUN YOUR CODE (the named module or file): "
        "that is your explicit choice; name only code you trust.",
    )
    group.add_argument(
        "--model",
        default=None,
        metavar="FACTORY",
        help="pkg.module:name or path/to/file.py:name, a function of yours called with no arguments that "
        "returns the nn.Module (instead of a checkpoint); a file's folder is on sys.path only while it loads",
    )
    group.add_argument(
        "--weights",
        type=_path,
        default=None,
        metavar="FILE",
        help="weights for --model (.safetensors, or .pt read without unpickling code); keys must match exactly",
    )
    group.add_argument(
        "--task",
        choices=("classification", "regression"),
        default=None,
        help="what the model does (default: inferred, float labels mean regression)",
    )
    group.add_argument(
        "--tokenizer",
        type=_path,
        default=None,
        metavar="DIR",
        help="a local tokenizer folder (save_pretrained) to show token ids as text; needs transformers",
    )
    group.add_argument(
        "--activations",
        type=_activations,
        default=None,
        metavar="LAYER=ACT,...",
        help="the activation after linear layers the analysis cannot find by itself, e.g. fc1=relu,head.fc=gelu",
    )
    group.add_argument("--batch-size", type=_integer(1), default=None, help="samples per batch (default: 1024)")
    group.add_argument(
        "--max-samples", type=_integer(1), default=None, metavar="N", help="analyse the first N samples only"
    )
    if device:
        group.add_argument("--device", default="cpu", help="auto, cpu or cuda for --model runs (default: cpu)")
        group.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help=_DTYPE_HELP)


def _activations(text: str) -> dict[str, str]:
    from inspector.factories import parse_activations

    try:
        return parse_activations(text)
    except InspectorError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--activations: ")) from None


def _csv(text: str | None) -> tuple[str, ...] | None:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def _cmd_analyze(args: argparse.Namespace) -> int:
    from inspector.analysis import distributed
    from inspector.results import check_result_folder

    _check_subject(args, args.checkpoint is not None, "a checkpoint")
    if distributed.launched_by_torchrun():  # torchrun --nproc_per_node N: join the group, only rank 0 writes
        with distributed.process_group(_device(args)):
            with distributed.together("checking --out"):
                if distributed.is_writer():
                    check_result_folder(args.out, force=args.force, inputs=_analysis_inputs(args))
            return _analyze_and_write(args)
    check_result_folder(args.out, force=args.force, inputs=_analysis_inputs(args))
    return _analyze_and_write(args)


def _analysis_inputs(args: argparse.Namespace) -> list[Path]:
    return _input_files(args.checkpoint, *_factory_inputs(args))


def _analyze_and_write(args: argparse.Namespace) -> int:
    from inspector.analysis import AnalysisOptions, distributed
    from inspector.results import result_files
    from inspector.summary import format_summary

    defaults = AnalysisOptions()
    options = _options(
        args,
        sections=_csv(args.sections) or defaults.sections,
        methods=_csv(args.methods) or defaults.methods,
        n_steps=args.steps,
        nearly_dead_threshold=args.nearly_dead,
        finetune_epochs=args.finetune_epochs,
    )
    analysis, _ = _analysis_for(args.checkpoint, args, options)
    if not distributed.is_writer():  # every rank holds the same merged analysis; rank 0 writes it
        return 0
    analysis.save(args.out, force=args.force)
    print(format_summary(analysis))
    json_path, arrays_path = result_files(args.out)
    print(f"wrote {json_path} and {arrays_path} in {sum(analysis.timings.values()):.1f} s of analysis")
    return 0


def _input_files(*paths: str | Path | None) -> list[Path]:
    """The files a command reads, which its --force must never replace.

    ``RUN.pt@EPOCH`` reads ``RUN.pt``; an analysis folder, its ``analysis.json`` and arrays.
    """
    from inspector.results import result_files

    files = []
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if not path.exists() and "@" in path.name:
            path = Path(str(path).rpartition("@")[0])
        files.append(path)
        if path.is_dir():
            files += [p for p in result_files(path) if p is not None]
    return files


def _note(message: str) -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):  # under torchrun only rank 0 speaks
        return
    print(f"inspector: note: {printable(message)}", file=sys.stderr)  # may quote names from a file


def _analysis_for(path: Path | None, args: argparse.Namespace, options=None):
    """(analysis, model or None) for --model, a saved analysis, a checkpoint or RUN.pt@EPOCH."""
    from inspector.analysis import analyze_path

    options = options or _options(args)
    if path is None:
        run = _factory_run(args, options)
        return run.analysis, run.model
    if _data_factory(args):  # a checkpoint on the user's own data
        run = _factory_run(args, options, checkpoint=path)
        return run.analysis, run.model
    analysis, ckpt, _ = analyze_path(
        path,
        data=args.data,
        label_column=args.label_column,
        activation=args.activation,
        trust_pickle=args.trust_pickle,
        options=options,
        notify=_note,
        device=_device(args),
    )
    return analysis, ckpt.model if ckpt is not None else None


def _device(args: argparse.Namespace):
    from inspector.training import resolve_device

    return resolve_device(args.device) if getattr(args, "device", None) else None


def _options(args: argparse.Namespace, **chosen):
    """AnalysisOptions with --batch-size and --max-samples (when given) on top of ``chosen``."""
    from inspector.analysis import AnalysisOptions

    if args.batch_size is not None:
        chosen["batch_size"] = args.batch_size
    if args.max_samples is not None:
        chosen["max_samples"] = args.max_samples
    if getattr(args, "dtype", None) is not None:
        chosen["dtype"] = args.dtype
    return AnalysisOptions(**chosen)


def _check_subject(args: argparse.Namespace, given: bool, what: str) -> None:
    """Exactly one of ``what`` (the positional input) and --model; the --model-only options need --model."""
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
            if value is not None and not _data_factory(args):
                raise InspectorError(f"{flag} applies to --model or a --data factory")
        if args.command == "dashboard" and not given and _data_factory(args):
            raise InspectorError("a --data factory needs --model or a checkpoint; the demo has its own data")
    elif args.activation is not None:
        raise InspectorError("--activation is for a checkpoint's state dict; for --model use --activations LAYER=ACT")


def _data_factory(args: argparse.Namespace) -> bool:
    from inspector.factories import is_data_factory

    return is_data_factory(args.data)


def _factory_inputs(args: argparse.Namespace) -> list[str | Path | None]:
    """What a --model run reads besides a checkpoint (never to be overwritten): data, weights, the factories' files."""
    from inspector.factories import factory_file

    files: list[str | Path | None] = [args.weights]
    if args.model is not None:
        files.append(factory_file(args.model))
    files.append(factory_file(args.data) if _data_factory(args) else args.data)
    return files


def _factory_run(args: argparse.Namespace, options, checkpoint: Path | None = None, notify=_note):
    from inspector.factories import analyze_factory

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
        device=_device(args),
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from inspector.analysis.compare import compare
    from inspector.fileio import check_writable
    from inspector.report import check_png_folder, format_for, is_own_report, render_text, write_report

    if len(args.paths) > 2:
        raise InspectorError("give one path for a report or two for a comparison")
    _check_subject(args, bool(args.paths), "a PATH")
    to_stdout = str(args.out) == "-"
    fmt = format_for(args.out, args.format)
    inputs = _input_files(*args.paths, *_factory_inputs(args))
    if to_stdout:
        if fmt in ("pdf", "png"):
            raise InspectorError(f"{fmt} reports can't go to standard output; give a file name to --out")
    elif fmt == "png":  # before the analysis, not after
        check_png_folder(args.out, force=args.force, inputs=inputs)
    else:
        check_writable(args.out, force=args.force, inputs=inputs, ours=partial(is_own_report, fmt=fmt))
    runs = _runs_in(args.paths[0]) if len(args.paths) == 1 and args.model is None else []
    if runs:
        _write_run_report(runs, args, fmt, to_stdout)
        return 0
    analysis, model = _analysis_for(args.paths[0] if args.paths else None, args)
    subject = analysis
    if len(args.paths) == 2:
        other, other_model = _analysis_for(args.paths[1], args)
        subject = compare(analysis, other, model_a=model, model_b=other_model)
    if to_stdout:
        sys.stdout.write(render_text(subject, fmt))
        return 0
    write_report(subject, args.out, fmt, force=args.force)
    print(f"wrote {args.out} ({fmt})")
    return 0


def _opens_as_analysis(path: Path) -> bool:
    """Whether the folder ``path`` is an analysis folder or a sharded checkpoint (what analyze_path opens)."""
    from inspector.formats import sharded_index_path
    from inspector.results import JSON_NAME

    return (path / JSON_NAME).exists() or sharded_index_path(path) is not None


def _runs_in(path: Path) -> list[Path]:
    """The training runs ``path`` names (a run directory or a folder of runs); empty for anything else."""
    from inspector.live.store import find_runs

    return find_runs(path) if path.is_dir() else []


def _write_run_report(runs: list[Path], args: argparse.Namespace, fmt: str, to_stdout: bool) -> None:
    from inspector.analysis.weights_file import analyze_weights_file
    from inspector.live.store import read_run
    from inspector.report import run_html, write_run_report

    histories, errors = [], []
    for path in runs:
        try:
            histories.append(read_run(path))
        except InspectorError as exc:  # one unreadable run of a folder: the others still report
            errors.append((path, str(exc)))
    if not histories:  # one line: the run's own error, or that none of the folder's can be read
        if len(errors) == 1:
            raise InspectorError(errors[0][1])
        raise InspectorError(f"none of the {len(errors)} runs in {args.paths[0]} can be read (not run databases)")
    for path, why in errors:
        _note(f"skipped {path}: {why}")
    newest = histories[0].latest_snapshot
    analysis = analyze_weights_file(newest.path) if newest is not None else None
    if to_stdout:
        if fmt != "html":
            raise InspectorError(f"a run's report is HTML or PDF, not {fmt}")
        sys.stdout.write(run_html(histories, analysis))
        return
    write_run_report(histories, analysis, args.out, fmt, force=args.force)
    print(f"wrote {args.out} ({fmt})")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboards.app import check_port, serve
    from dashboards.launch import app_for_path, app_for_run, app_for_runs

    _check_subject(args, args.path is not None, "a PATH")
    check_port(args.host, args.port)  # before minutes of training or analysis, not after

    def log(message: str) -> None:
        print(f"inspector: {message}", file=sys.stderr)

    if args.model is None and args.path is not None and _runs_in(args.path):
        app = app_for_runs(args.path, refresh=args.refresh, log=log)
    elif args.path is not None and args.path.is_dir() and not _opens_as_analysis(args.path):
        raise InspectorError(
            f"{args.path} holds no training run, analysis or sharded checkpoint; dashboard accepts a checkpoint, "
            "an analysis folder, a run directory (run.sqlite) or a folder of runs"
        )
    elif args.model is not None or _data_factory(args):
        app = app_for_run(_factory_run(args, _options(args), args.path, notify=lambda m: log(f"note: {m}")))
    else:
        app = app_for_path(
            args.path,
            data=args.data,
            label_column=args.label_column,
            activation=args.activation,
            trust_pickle=args.trust_pickle,
            options=_options(args),
            device=_device(args),
            log=log,
        )
    print(f"dense-inspector dashboard on http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    serve(app, args.host, args.port, debug=args.debug, allow_hosts=args.allow_host)
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from inspector.analysis.parameters import count_parameters
    from inspector.analysis.pruning import prune, prune_and_finetune
    from inspector.analysis.reduced_dtype import forward_model, torch_dtype
    from inspector.analysis.task import task_for_labels
    from inspector.checkpoints import checkpoint_suffix, is_own_checkpoint, load, save_checkpoint
    from inspector.core.evaluator import evaluate_arrays, format_metric, metric_key
    from inspector.evaluation import eval_data_for
    from inspector.fileio import check_writable

    _check_subject(args, args.checkpoint is not None, "a checkpoint")
    if args.model is not None:
        return _prune_factory_model(args)
    if _data_factory(args):
        raise InspectorError("prune of a checkpoint reads built-in or file --data; a --data factory goes with --model")
    check_writable(args.out, force=args.force, inputs=_input_files(args.checkpoint, args.data), ours=is_own_checkpoint)
    checkpoint_suffix(args.out)
    if not 0 <= args.sparsity < 1:
        raise InspectorError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    ckpt = load(args.checkpoint, activation=args.activation, trust_pickle=args.trust_pickle)
    for notice in ckpt.notices:
        _note(notice)
    if ckpt.config is None:
        raise InspectorError(f"{args.checkpoint}: only MLP checkpoints can be exported after pruning")
    data = eval_data_for(ckpt, args.data, label_column=args.label_column)
    if args.finetune_epochs:
        if data is None or data.train_X is None:
            raise InspectorError("fine-tuning needs a training split: use a built-in --data or a model trained on one")
        pruned = prune_and_finetune(
            ckpt.model, args.sparsity, args.scope, data.train_X, data.train_y, args.finetune_epochs
        )
    else:
        pruned = prune(ckpt.model, args.sparsity, args.scope)
    nonzero = sum(int((p != 0).sum()) for p in pruned.parameters())
    total = count_parameters(pruned).total_parameters
    metrics = {"pruned_sparsity": args.sparsity, "nonzero_parameters": float(nonzero)}
    line = f"pruned {args.sparsity:.0%} ({args.scope}): {nonzero:,} of {total:,} parameters are nonzero"
    if data is not None:
        X, y = torch.from_numpy(data.X).to(torch_dtype(args.dtype)), torch.from_numpy(data.y)
        task = task_for_labels(y)  # the metric under its own name: accuracy, or R² for a regression
        before = evaluate_arrays(forward_model(ckpt.model, args.dtype), X, y, task).metric
        after = evaluate_arrays(forward_model(pruned, args.dtype), X, y, task).metric
        metrics[metric_key(task.metric_name)] = after
        name = task.metric_name
        line += f"; {data.name} {data.split} {name} {format_metric(name, before)} -> {format_metric(name, after)}"
        line += f" ({args.dtype} forward)" if args.dtype != "fp32" else ""
    save_checkpoint(dataclasses.replace(ckpt, model=pruned, snapshots={}, metrics=metrics), args.out, force=args.force)
    print(line)
    print(f"saved {args.out}")
    return 0


def _prune_factory_model(args: argparse.Namespace) -> int:
    """prune --model: the user's model pruned, its state_dict() written; the metric before -> after on --data."""
    from inspector.analysis.parameters import count_parameters
    from inspector.analysis.pruning import prune
    from inspector.analysis.reduced_dtype import forward_model
    from inspector.checkpoints import checkpoint_suffix, is_own_checkpoint
    from inspector.evaluation import evaluate_model
    from inspector.factories import is_own_state_dict, model_from_factory, resolve_data, save_state_dict, user_code
    from inspector.fileio import check_writable

    check_writable(
        args.out,
        force=args.force,
        inputs=_input_files(*_factory_inputs(args)),
        ours=lambda p: is_own_state_dict(p) or is_own_checkpoint(p),
    )
    checkpoint_suffix(args.out)
    if not 0 <= args.sparsity < 1:
        raise InspectorError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.finetune_epochs:
        raise InspectorError("--finetune-epochs needs a dense-inspector checkpoint; for --model fine-tune in your code")
    if args.activations is not None or args.tokenizer is not None:
        raise InspectorError("--activations and --tokenizer apply to analyze, report and dashboard, not prune")
    label = f"--model {args.model}"
    model = model_from_factory(args.model, args.weights, trust_pickle=args.trust_pickle)
    device = _device(args)
    with user_code(label):
        if device is not None:
            model.to(device)
        data = resolve_data(args.data, model, label_column=args.label_column, source=args.model)
        if data is not None and args.max_samples is not None:
            from inspector.analysis.inputs import as_source

            data = as_source(data, batch_size=args.batch_size or 1024).limited(args.max_samples)
        pruned = prune(model, args.sparsity, args.scope, data=data)
        line = f"pruned {args.sparsity:.0%} ({args.scope}): "
        nonzero = sum(int((p != 0).sum()) for p in pruned.parameters())
        line += f"{nonzero:,} of {count_parameters(pruned).total_parameters:,} parameters are nonzero"
        if data is not None:
            batch_size = args.batch_size or 1024
            before = evaluate_model(forward_model(model, args.dtype), data, args.task, batch_size=batch_size)
            after = evaluate_model(forward_model(pruned, args.dtype), data, args.task, batch_size=batch_size)
            shown = _metric_text(before.metric_name)
            line += (
                f"; {before.metric_name} {shown(before.metric)} -> {shown(after.metric)} ({before.n_samples} samples)"
            )
            line += f" ({args.dtype} forward)" if args.dtype != "fp32" else ""
    save_state_dict(pruned, args.out, force=args.force)
    print(line)
    print(f"saved {args.out} (the pruned model's state_dict())")
    return 0


def _metric_text(name: str):
    return (lambda v: f"{v:.2%}") if name == "accuracy" else (lambda v: f"{v:.4f}")


def _check_new_run_dir(run_dir: Path) -> None:
    """Before training: a run is never overwritten (--force does not apply to it), and the parent must exist."""
    from inspector.live.store import is_run

    if is_run(run_dir):
        raise InspectorError(f"{run_dir} already holds a run; choose a new --run-dir (runs are never overwritten)")
    if run_dir.exists() and not run_dir.is_dir():
        raise InspectorError(f"--run-dir {run_dir} is a file; choose a new directory")
    if not run_dir.parent.is_dir():
        raise InspectorError(f"--run-dir {run_dir}: its parent folder {run_dir.parent} does not exist")


def _cmd_train(args: argparse.Namespace) -> int:
    from inspector.analysis.parameters import count_parameters
    from inspector.checkpoints import checkpoint_from_training, checkpoint_suffix, is_own_checkpoint, save_checkpoint
    from inspector.data import BUILTIN_DATASETS, SplitSpec, check_classification_labels, load_dataset, split_dataset
    from inspector.fileio import check_writable
    from inspector.models import MLPConfig
    from inspector.summary import format_parameters
    from inspector.training import TrainConfig, train

    dataset_name = Path(args.dataset).stem if args.dataset not in BUILTIN_DATASETS else args.dataset
    out = args.out or Path(f"{dataset_name}-mlp.pt")
    check_writable(
        out,
        force=args.force,
        inputs=_input_files(args.dataset),  # fail before training, not after
        ours=is_own_checkpoint,
    )
    checkpoint_suffix(out)
    if args.run_dir is not None:
        _check_new_run_dir(args.run_dir)
    dataset = load_dataset(args.dataset, label_column=args.label_column, task=args.task or "auto")
    regression = dataset.task == "regression"
    if regression and args.task is None and args.dataset not in BUILTIN_DATASETS:
        _note(
            f"{args.dataset}: the labels are numbers that are not all whole numbers, so this trains a regression "
            "model (MSE loss, R²); pass --task to choose"
        )
    if not regression:
        check_classification_labels(dataset, str(args.dataset))
    spec = SplitSpec(seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    splits = split_dataset(dataset, spec)
    config = MLPConfig(
        input_size=dataset.n_features,
        hidden_sizes=args.hidden,
        output_size=dataset.n_outputs,
        activation=args.activation,
        dropout=args.dropout,
        batch_norm=args.batch_norm,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        patience=args.patience or None,
        snapshot_every=args.snapshot_every,
        seed=args.seed,
    )
    result = train(
        config,
        splits,
        train_config,
        device=args.device,
        progress=False if args.quiet else None,
        run_dir=args.run_dir,
        every=args.every,
    )
    ckpt = checkpoint_from_training(result, dataset, splits.standardizer, spec)
    save_checkpoint(ckpt, out, force=args.force)
    h = result.history
    n_targets = len(dataset.target_names)
    what = f"regression of {n_targets} target{'s' if n_targets != 1 else ''}, " if regression else ""
    print(
        f"MLP {'-'.join(map(str, config.layer_sizes))} ({config.activation}) on {dataset.name}: {what}"
        f"{dataset.n_samples} samples, {len(splits.y_train)}/{len(splits.y_val)}/{len(splits.y_test)} "
        "train/val/test"
    )
    print(format_parameters(count_parameters(result.model)))
    stop = f"early stop, best epoch {h.best_epoch}" if h.stopped_early else f"best epoch {h.best_epoch}"
    print(f"trained {h.epochs_run} epochs ({stop}) in {result.wall_time_s:.1f} s on {result.device}")
    if regression:
        mean_of = f" (mean of {n_targets} targets)" if n_targets > 1 else ""
        print(f"test R² {result.test_r2:.4f}{mean_of}, MSE {result.test_loss:.4g} ({len(splits.y_test)} samples)")
    else:
        print(
            f"test accuracy {result.test_accuracy:.2%} ({len(splits.y_test)} samples), test loss {result.test_loss:.4f}"
        )
    if result.snapshots:
        print(f"kept {len(result.snapshots)} weight snapshots")
    if args.run_dir is not None:
        print(f"recorded the dense layers every {args.every} steps in {args.run_dir}")
    print(f"saved {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    """Header only: no tensor is read (the NaN/Inf scan is ``analyze``'s), so any file answers at once."""
    from inspector.inventory import read_inventory
    from inspector.render.tables import format_inventory

    inv = read_inventory(args.checkpoint, trust_pickle=args.trust_pickle)
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2))
        return 0
    print(f"{inv.path} ({inv.format})")
    if inv.config is not None:  # validated: only dense-inspector's own metadata has a config
        extras = [inv.config.activation]
        if inv.config.batch_norm:
            extras.append("batch norm")
        if inv.config.dropout:
            extras.append(f"dropout {inv.config.dropout}")
        print(f"MLP {'-'.join(map(str, inv.config.layer_sizes))} ({', '.join(extras)})")
    if not inv.linear_layers and not inv.embeddings:
        raise InspectorError(f"{inv.path}: no 2-D weight tensors found; nothing dense to inspect")
    print(format_inventory(inv))
    metrics = inv.metadata.get("metrics", {}) if inv.config is not None else {}
    if isinstance(metrics.get("test_accuracy"), float):
        print(f"test accuracy {metrics['test_accuracy']:.2%}")
    if isinstance(metrics.get("test_r2"), float):  # a regression run
        mse = metrics.get("test_mse")
        print(f"test R² {metrics['test_r2']:.4f}" + (f", MSE {mse:.4g}" if isinstance(mse, float) else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, so that a closed pipe is caught below
        return status
    except BrokenPipeError:
        # The reader (`| head`) left: like ripgrep, that is success, for every command. Python's
        # documented recipe: point stdout at devnull so the exit flush stays silent, no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(argv: Sequence[str] | None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version: their text must meet a closed pipe here, not at exit
        sys.stdout.flush()
        raise
    for name in ("checkpoint", "paths", "path", "out", "data", "dataset"):
        values = getattr(args, name, None)
        if any(v is _EMPTY_PATH or v == "" for v in (values if isinstance(values, list) else [values])):
            what = f"--{name}" if name in ("out", "data", "dataset") else name.upper()
            print(f"inspector: error: {what}: empty path; give a file or folder name", file=sys.stderr)
            return EXIT_USER_ERROR
    handlers = {
        "train": _cmd_train,
        "info": _cmd_info,
        "analyze": _cmd_analyze,
        "prune": _cmd_prune,
        "dashboard": _cmd_dashboard,
        "report": _cmd_report,
    }
    try:
        status = handlers[args.command](args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        raise
    except InspectorError as exc:
        print(f"inspector: error: {printable(str(exc))}", file=sys.stderr)  # one line, whatever a file held
        return EXIT_USER_ERROR
    except OSError as exc:  # a file the user named or a folder we write: one line, never a traceback
        print(f"inspector: error: {printable(_os_error_line(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("inspector: interrupted", file=sys.stderr)
        return 130


def _os_error_line(exc: OSError) -> str:
    from inspector.fileio import describe_os_error

    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {describe_os_error(exc)}" if names else describe_os_error(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

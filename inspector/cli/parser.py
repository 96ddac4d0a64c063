"""The ``inspector`` command line's arguments: flags, help and defaults, argparse only."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from inspector._version import __version__
from inspector.checks import printable
from inspector.data import MAX_SEED
from inspector.errors import InspectorError
from inspector.factories import parse_activations
from inspector.models import ACTIVATIONS


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


def build_parser() -> argparse.ArgumentParser:
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
    _add_text_arguments(analyze)
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
        "--methods",
        default=None,
        metavar="LIST",
        help="comma-separated attribution methods (default: all seven; for token ids integrated_gradients, "
        "input_x_gradient, saliency)",
    )
    analyze.add_argument(
        "--steps", type=_integer(1), default=None, help="Integrated Gradients steps (default: 50; 16 for token ids)"
    )
    analyze.add_argument(
        "--nearly-dead",
        type=_real(0, 1, low_open=True),
        default=0.01,
        metavar="RATE",
        help="firing rate below which a neuron counts as nearly dead (default: 0.01)",
    )
    analyze.add_argument(
        "--top-k",
        type=_integer(0),
        default=20,
        metavar="K",
        help="keep each neuron's K top-activating examples (tokens with context, or samples); 0: none (default: 20)",
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
        help="global magnitude ranking, per layer, or whole hidden neurons (a checkpoint's are removed: a "
        "smaller model) (default: global)",
    )
    _add_data_arguments(prune)
    _add_text_arguments(prune)
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
    _add_text_arguments(report)
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
    _add_text_arguments(dash)
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
    dash.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help="the secret every request must carry (default: $DENSE_INSPECTOR_TOKEN, else a random one off "
        "loopback, printed in the URL; none on 127.0.0.1 unless given)",
    )
    dash.add_argument(
        "--no-auth",
        action="store_true",
        help="serve off loopback without a token: anyone who reaches the port uses the dashboard",
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
    p.add_argument(
        "--label-column", help="name of the label column in a .csv file (with --text: default label, when present)"
    )
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


def _add_text_arguments(p: argparse.ArgumentParser) -> None:
    """--text and its options: a Hugging Face model folder (the positional path) on a text file."""
    group = p.add_argument_group(
        "a Hugging Face model folder on text",
        "MODEL_DIR --text FILE: the model class from MODEL_DIR/config.json (architectures), its weights "
        "(safetensors; a .bin only with --trust-pickle) and tokenizer from the same folder, never downloaded. "
        "A classifier explains the true label's logit (accuracy), a causal LM the log-probability of the "
        "actual next tokens (loss, perplexity); any other model needs --target.",
    )
    group.add_argument(
        "--text",
        type=_path,
        default=None,
        metavar="FILE",
        help=".txt (one text a line), .jsonl or .csv (a text column, an optional label column); "
        "tokenized batch by batch, each batch padded to its longest text",
    )
    group.add_argument(
        "--text-column", default=None, metavar="NAME", help="the text column of a .jsonl or .csv file (default: text)"
    )
    group.add_argument(
        "--max-length",
        type=_integer(1),
        default=None,
        metavar="N",
        help="truncate each text to N tokens (default: 128, at most what the model takes)",
    )
    group.add_argument(
        "--target",
        default=None,
        metavar="NAME|FILE.py:FN",
        help="what to explain: pooled-norm (the L2 norm of the pooled/CLS output), mean-norm (of the mean "
        "hidden state over real tokens), predicted-logit, or a function of yours fn(out, batch) -> one value "
        "per sample (batch: the dict of input_ids, attention_mask, labels)",
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
    try:
        return parse_activations(text)
    except InspectorError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--activations: ")) from None

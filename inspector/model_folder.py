"""A Hugging Face model folder (what ``save_pretrained`` writes) as a model and its tokenizer, never downloaded.

The model's class is the first of ``config.json``'s ``architectures``, looked up on ``transformers``
and loaded with ``from_pretrained(folder, local_files_only=True)``: only safetensors weights unless
``trust_pickle`` (a ``pytorch_model.bin`` is a pickle, which can run code). The tokenizer is the one
saved in the same folder (``AutoTokenizer``, local files only). What the model is decides what is
explained by default (:func:`head_kind`): a sequence classifier, a causal language model, or
anything else (a base encoder), which needs ``--target``. A folder the tool cannot use is an
:class:`~inspector.errors.InspectorError` of one line saying what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from inspector.analysis.text_targets import CAUSAL_LM, CLASSIFIER
from inspector.errors import InspectorError
from inspector.factories import load_tokenizer

CONFIG_NAME = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)

OTHER = "other"  # a base encoder, a masked LM, ...: --target says what to explain


@dataclass(frozen=True)
class ModelFolder:
    """A loaded model folder. ``kind``: :data:`CLASSIFIER`, :data:`CAUSAL_LM` or :data:`OTHER`;
    ``label_ids``: the config's ``label2id``; ``max_positions``: the longest sequence the model takes
    (``None`` when the config does not say); ``pad_id``: the id padding is written with."""

    folder: Path
    model: nn.Module = field(repr=False)
    tokenizer: Any = field(repr=False)
    architecture: str
    kind: str
    label_ids: dict[str, int]
    max_positions: int | None
    pad_id: int


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder with a ``config.json`` (a ``save_pretrained`` folder)."""
    return Path(path).is_dir() and (Path(path) / CONFIG_NAME).is_file()


def head_kind(architecture: str) -> str:
    """What a class name says the model does: ``*ForSequenceClassification`` is a classifier,
    ``*ForCausalLM`` / ``*LMHeadModel`` a causal language model, anything else :data:`OTHER`."""
    if architecture.endswith("ForSequenceClassification"):
        return CLASSIFIER
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return CAUSAL_LM
    return OTHER


def read_config(folder: Path) -> dict[str, Any]:
    """``folder``'s ``config.json``, checked to name an architecture."""
    if not folder.is_dir():
        reason = "does not exist" if not folder.exists() else "is a file"
        raise InspectorError(f"{folder} {reason}; with --text give a model folder (what save_pretrained() writes)")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise InspectorError(
            f"{folder} has no config.json; with --text give the folder model.save_pretrained() and "
            "tokenizer.save_pretrained() wrote"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectorError(f"{path} is not JSON ({exc}); re-save the model with save_pretrained()") from None
    if not isinstance(config, dict):
        raise InspectorError(f"{path} is not a JSON object; re-save the model with save_pretrained()")
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise InspectorError(
            f'{path} names no architectures; add e.g. "architectures": ["BertForSequenceClassification"] '
            "(save_pretrained() of a model class writes it)"
        )
    return config


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise InspectorError(
            "reading a model folder needs the transformers package: pip install transformers"
        ) from None
    return transformers


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' loading messages and progress bars off while a folder loads (the CLI speaks for it)."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def load_model_folder(folder: str | os.PathLike[str], *, trust_pickle: bool = False) -> ModelFolder:
    """The model and tokenizer saved in ``folder``, in eval mode, checked to fit each other."""
    folder = Path(folder)
    config = read_config(folder)
    architecture = config["architectures"][0]
    if config.get("is_encoder_decoder"):
        raise InspectorError(
            f"{folder}: {architecture} is an encoder-decoder model, whose decoder needs its own input besides "
            "the text; --text takes classifiers, causal LMs and encoders: from Python, give inspector.analyze "
            "batches that hold decoder_input_ids and a target="
        )
    transformers = _transformers()
    model_class = getattr(transformers, architecture, None)
    if not isinstance(model_class, type) or not hasattr(model_class, "from_pretrained"):
        raise InspectorError(
            f"{folder}: config.json's architecture {architecture!r} is not a model class of transformers "
            f"{transformers.__version__}; upgrade transformers or fix config.json's architectures"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InspectorError(
            f"{folder} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); save it beside the "
            "model: tokenizer.save_pretrained(MODEL_DIR)"
        )
    safetensors = any(folder.glob("*.safetensors"))
    if not safetensors and not trust_pickle:
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        what = f"only {pickles[0]}, a pickle that can run code" if pickles else "no model.safetensors"
        raise InspectorError(
            f"{folder} holds {what}; save the weights as safetensors (save_pretrained() does by default) "
            "or pass --trust-pickle for a folder you trust"
        )
    with _quiet(transformers):
        try:
            model = model_class.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True if not trust_pickle else None
            )
        except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError... for a folder it cannot read
            raise InspectorError(f"{folder}: cannot load {architecture} ({_first_line(exc)})") from None
        tokenizer = load_tokenizer(folder, label=str(folder))
    model.eval()
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embedding, "num_embeddings", None)
    vocabulary = len(tokenizer)
    if rows is not None and vocabulary > rows:
        raise InspectorError(
            f"{folder}: the tokenizer has {vocabulary} tokens but the model's input embedding has {rows} rows "
            f"(token ids >= {rows} cannot be looked up); save the tokenizer the model was trained with"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model_config: Any = getattr(model, "config", None)
    if head_kind(architecture) == CLASSIFIER and pad is not None and getattr(model_config, "pad_token_id", 0) is None:
        # a decoder's classifier (GPT2ForSequenceClassification) reads the logit at the last token that is not
        # padding, and refuses batches of more than one text when its config names no pad token: the batches
        # are padded with ``pad`` on the right, so that is the id it must skip
        model_config.pad_token_id = int(pad)
    label_ids = config.get("label2id") or {}
    positions = next(
        (
            config[key]
            for key in ("max_position_embeddings", "n_positions", "n_ctx")
            if isinstance(config.get(key), int)
        ),
        None,
    )
    return ModelFolder(
        folder=folder,
        model=model,
        tokenizer=tokenizer,
        architecture=architecture,
        kind=head_kind(architecture),
        label_ids={str(k): int(v) for k, v in label_ids.items()} if isinstance(label_ids, dict) else {},
        max_positions=positions,
        pad_id=int(pad) if pad is not None else 0,
    )

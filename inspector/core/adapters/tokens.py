"""Token ids: integer inputs ``(n, T)``, attributed through the model's input embedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from inspector.core.adapters.base import AdaptedBatch, InputAdapter, Path
from inspector.errors import InspectorError


class EmbeddingForward:
    """``forward(embedded, ids, *args)``: the target with the embedding module's output replaced by
    ``embedded`` ``(n, T, E)``. The ids travel as a forward argument so Captum expands them in step
    with ``embedded`` (the model still needs their shape: positions, default masks)."""

    def __init__(self, forward: Callable[..., torch.Tensor], embedding: nn.Module) -> None:
        self.forward = forward
        self.embedding = embedding

    def __call__(self, embedded: torch.Tensor, ids: torch.Tensor, *args: Any) -> torch.Tensor:
        # in the shape the model made (it may have reshaped its ids before the embedding)
        handle = self.embedding.register_forward_hook(lambda module, inputs, output: embedded.reshape(output.shape))
        try:
            return self.forward(ids, *args)
        finally:
            handle.remove()


def _declared_embedding(model: nn.Module) -> nn.Module | None:
    """A Hugging Face model's ``get_input_embeddings()``, ``None`` when it has none."""
    getter = getattr(model, "get_input_embeddings", None)
    if not callable(getter):
        return None
    try:
        module = getter()
    except (NotImplementedError, AttributeError):
        return None
    return module if isinstance(module, nn.Module) else None


def _same_ids(received: Any, ids: torch.Tensor) -> bool:
    """Whether an embedding's input ``received`` holds the ids ``ids``: the same values, in any shape
    (a model may flatten or reshape its ids before the embedding)."""
    if not isinstance(received, torch.Tensor) or received.numel() != ids.numel() or received.is_floating_point():
        return False
    return bool(torch.equal(received.reshape(-1), ids.reshape(-1).to(received.device, received.dtype)))


def input_embedding(model: nn.Module, batch: AdaptedBatch | None = None) -> str | None:
    """The module path of the embedding the attributed ids of ``batch`` go through; ``None`` when
    no embedding receives them.

    Observed on one forward pass of (the first rows of) ``batch`` with a hook on every
    ``nn.Embedding`` (and a Hugging Face model's ``get_input_embeddings()``): the embedding whose
    input is the ids tensor itself, else one whose input holds the same ids (the declared input
    embedding first, then the first called). Without ``batch``, or when that forward pass fails:
    the declared input embedding, else the first ``nn.Embedding`` registered.
    """
    declared = _declared_embedding(model)
    names = {m: name for name, m in model.named_modules()}
    candidates: list[nn.Module] = [m for m in names if isinstance(m, nn.Embedding)]
    if declared is not None and declared in names and declared not in candidates:
        candidates.insert(0, declared)
    fallback = names[declared] if declared is not None and declared in names else None
    if fallback is None:
        fallback = next((names[m] for m in candidates), None)
    if batch is None or not candidates:
        return fallback
    probe = batch.rows(slice(0, 64))
    ids = probe.inputs
    received: list[tuple[nn.Module, Any]] = []

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        received.append((module, args[0] if args else next(iter(kwargs.values()), None)))
        # the rest of the pass cannot change the answer: the first to receive the ids tensor itself wins,
        # and the declared input embedding wins among those that receive the same ids (a model may reshape them)
        x = received[-1][1]
        if x is ids or (module is declared and _same_ids(x, ids)):
            raise _Found

    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in candidates]
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            probe.call(model)
    except _Found:
        pass
    except Exception:  # noqa: BLE001 - the model's own failure is reported where its output is needed
        return fallback
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in training.items():
            m.training = mode
    same = next((m for m, x in received if x is ids), None)
    if same is None:
        matching = [m for m, x in received if _same_ids(x, ids)]
        same = declared if declared in matching else next(iter(matching), None)
    return names[same] if same is not None else None


class _Found(Exception):
    """Stops the probe's forward pass at the embedding that receives the ids tensor itself."""


def _vocabulary(tokenizer: Any, vocabulary: Sequence[str] | None) -> Callable[[int], str] | None:
    if vocabulary is not None:
        words = list(vocabulary)
        return lambda i: words[i] if 0 <= i < len(words) else f"#{i}"
    if tokenizer is None:
        return None

    def text(value: Any, i: int) -> str:  # a tokenizer without text for an id (None, ""): its number
        return str(value) if value is not None and str(value) != "" else f"#{int(i)}"

    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if callable(convert):
        return lambda i: text(convert(int(i)), i)
    decode = getattr(tokenizer, "decode", None)
    if callable(decode):
        return lambda i: text(decode([int(i)]), i)
    raise InspectorError(
        f"tokenizer of type {type(tokenizer).__name__} has neither convert_ids_to_tokens "
        "nor decode; pass vocabulary=[...] instead"
    )


# What an analysis of token ids runs unless asked otherwise (AnalysisOptions fields): the attribution
# methods of one or a few passes on a bounded number of samples, so that the default analysis of a
# transformer costs about 20 forward passes of its data (benchmarks/bench_importance_tokens.py, docs/sections.md).
# Per-sample cost of each method, as a ratio to one forward pass of the same samples (MiniLM-sized
# BERT, one thread): saliency ~2-3, input x gradient ~2-3, Integrated Gradients ~3 per step,
# DeepLift ~7, GradientShap ~200, feature ablation and permutation ~60-65 (one pass per position).
TOKEN_ANALYSIS_DEFAULTS: dict[str, Any] = {
    "methods": ("integrated_gradients", "input_x_gradient", "saliency"),
    "n_steps": 16,
    "max_importance_samples": 32,
    "conductance_samples": 16,
    "max_pruning_samples": 64,
}


@dataclass(frozen=True)
class TokensAdapter(InputAdapter):
    """Integer ids ``(n, T)``: attributed through the input embedding (``embedding``), from the pad
    token at every real position; a feature is a distinct id, named by its text from the tokenizer
    or vocabulary; importance shown as a token table and text highlighted by attribution."""

    kind: ClassVar[str] = "tokens"
    description: ClassVar[str] = "token ids"
    display: ClassVar[str] = "tokens"
    through_embedding: ClassVar[bool] = True
    features_are_ids: ClassVar[bool] = True
    ragged: ClassVar[bool] = True
    editable: ClassVar[bool] = False
    neuron_conductance_skip: ClassVar[str | None] = (
        "the inputs are token ids, which have no fixed input element per neuron to attribute to"
    )
    analysis_defaults: ClassVar[dict[str, Any]] = TOKEN_ANALYSIS_DEFAULTS

    @classmethod
    def accepts(cls, inputs: torch.Tensor) -> bool:
        return not inputs.is_floating_point() and not inputs.is_complex()

    @classmethod
    def create(
        cls,
        model: nn.Module,
        first: AdaptedBatch,
        *,
        feature_names: Sequence[str] = (),
        tokenizer: Any = None,
        vocabulary: Sequence[str] | None = None,
    ) -> InputAdapter:
        """The embedding the ids go through (:func:`input_embedding`), the token text from
        ``vocabulary`` or ``tokenizer``, the pad id from the tokenizer, else the embedding's
        ``padding_idx``, else 0."""
        if not any(isinstance(m, nn.Embedding) for m in model.modules()) and _declared_embedding(model) is None:
            raise InspectorError(
                "the inputs are integers (token ids) but the model has no nn.Embedding to "
                "attribute them through; give float inputs, or a model whose ids go through "
                "an nn.Embedding"
            )
        embedding = input_embedding(model, first)
        if embedding is None:
            what = f"batch[{first.key!r}]" if first.key is not None else "the positional input"
            raise InspectorError(
                f"the attributed input {what} holds token ids that no nn.Embedding of the model receives as "
                "they are; put the ids the model embeds first in the batch (or name them input_ids), or give "
                "float inputs"
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(model.get_submodule(embedding), "padding_idx", None)
        return cls(
            first.key,
            tuple(int(s) for s in first.inputs.shape[1:]),
            embedding=embedding,
            vocabulary=_vocabulary(tokenizer, vocabulary),
            pad_id=int(pad) if pad is not None else 0,
        )

    def per_sample_elements(self, model: nn.Module) -> int:
        width = int(getattr(self.embedding_module(model), "embedding_dim", 1))
        return super().per_sample_elements(model) * width

    def baseline(self, inputs: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The pad token at every real position, the input itself at padded ones ``(n, T)``."""
        if real is None:
            real = torch.ones_like(inputs, dtype=torch.bool)
        return torch.where(real, torch.full_like(inputs, self.pad_id), inputs)

    def path(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        real: torch.Tensor | None,
        forward: Callable[..., torch.Tensor],
        args: tuple[Any, ...],
    ) -> Path:
        """The embedding's output for the ids and for the baseline ids; the ids ride along as an argument."""
        embedding = self.embedding_module(model)
        with torch.no_grad():
            x, x0 = embedding(inputs), embedding(self.baseline(inputs, real))
        return EmbeddingForward(forward, embedding), x, x0, (inputs, *args)

    @property
    def baseline_text(self) -> str:
        return f"the pad token (id {self.pad_id}) at every real position"

    def importance_names(self, token_ids: np.ndarray) -> tuple[str, ...]:
        return self.token_text(token_ids)

    @classmethod
    def map_shape(cls, input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None

"""Token ids: integer inputs ``(n, T)``, attributed through the model's input embedding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from inspector.core.adapters.base import InputAdapter, Path


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

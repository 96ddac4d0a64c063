"""Named targets for transformers read from a model folder, and the default task of each kind of head.

What ``inspector analyze MODEL_DIR --text FILE`` explains (:func:`text_task`):

* a sequence classifier (``*ForSequenceClassification``): the true label's logit, evaluated by
  accuracy (the ``classification`` task); without labels, the predicted label's logit
  (``predicted-logit``), evaluated by its mean;
* a causal language model (``*ForCausalLM``, ``*LMHeadModel``): the log-probability of the actual
  next tokens, summed per sequence over its real next-token positions, evaluated by the mean token
  cross-entropy and the perplexity (the ``causal-lm`` task);
* anything else (a base encoder such as ``BertModel``): what ``--target`` names, from
  :data:`TARGETS` or a function of the user's.

Each named target is ``target(output, batch) -> (n,)`` on the user's dict batch (``input_ids``,
``attention_mask``, ``labels``), as a ``target=`` of the user's own would be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from inspector.analysis.task import Target, output_tensor
from inspector.errors import InspectorError

# head kinds (inspector.model_folder.head_kind)
CLASSIFIER = "sequence-classifier"
CAUSAL_LM = "causal-lm"


def _field(output: Any, name: str) -> torch.Tensor | None:
    value = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
    return value if isinstance(value, torch.Tensor) else None


def _hidden(output: Any) -> torch.Tensor:
    """``(n, T, h)``: the last hidden state of a base model's output (its ``last_hidden_state``), of a model
    with a head (a masked LM: the last of its ``hidden_states``, which :func:`wants_hidden_states` asks
    for), else the first tensor of a tuple."""
    hidden = _field(output, "last_hidden_state")
    states = output.get("hidden_states") if isinstance(output, Mapping) else getattr(output, "hidden_states", None)
    if hidden is None and isinstance(states, (tuple, list)) and states and isinstance(states[-1], torch.Tensor):
        hidden = states[-1]
    if hidden is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        hidden = output[0]
    if hidden is None or hidden.dim() != 3:
        raise InspectorError(
            "this target needs the model's last hidden state (n, T, hidden); the model returns none: "
            "pass --target file.py:fn to say what to explain"
        )
    return hidden


def _mask(batch: Any, hidden: torch.Tensor) -> torch.Tensor:
    """``(n, T)`` float: 1 at real positions (the batch's ``attention_mask``; every position without one)."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(hidden.shape[:2]):
        return hidden.new_ones(hidden.shape[:2])
    return mask.to(hidden.dtype)


def pooled_norm(output: Any, batch: Any) -> torch.Tensor:
    """``(n,)``: the L2 norm of the pooled output (``pooler_output``), else of the first token's (CLS)
    last hidden state."""
    pooled = _field(output, "pooler_output")
    if pooled is None:
        pooled = _hidden(output)[:, 0]
    return pooled.reshape(pooled.shape[0], -1).norm(dim=1)


def mean_norm(output: Any, batch: Any) -> torch.Tensor:
    """``(n,)``: the L2 norm of the mean last hidden state over each sequence's real positions."""
    hidden = _hidden(output)
    mask = _mask(batch, hidden)
    mean = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    return mean.norm(dim=1)


def predicted_logit(output: Any, batch: Any) -> torch.Tensor:
    """``(n,)``: the largest logit of each sample (the predicted class's), for ``(n, classes)`` logits."""
    if not isinstance(output, torch.Tensor) and _field(output, "logits") is None:
        raise InspectorError(
            "--target predicted-logit needs a model with a classification head (logits); this one returns "
            "hidden states: choose pooled-norm or mean-norm, or --target file.py:fn"
        )
    logits = output_tensor(output)
    if logits.dim() != 2:
        per_token = " (one row per token)" if logits.dim() == 3 else ""
        raise InspectorError(
            f"predicted-logit needs logits of shape (n, classes); the model returns {tuple(logits.shape)}{per_token}: "
            "choose pooled-norm or mean-norm, or --target file.py:fn"
        )
    return logits.max(dim=1).values


@dataclass(frozen=True)
class NamedTarget:
    """A target ``--target NAME`` picks: the function and what it explains, in words."""

    name: str
    function: Callable[[Any, Any], torch.Tensor]
    text: str


TARGETS: dict[str, NamedTarget] = {
    t.name: t
    for t in (
        NamedTarget("pooled-norm", pooled_norm, "the L2 norm of the pooled (CLS) output"),
        NamedTarget("mean-norm", mean_norm, "the L2 norm of the mean last hidden state over real tokens"),
        NamedTarget("predicted-logit", predicted_logit, "the predicted class's logit"),
    )
}

HIDDEN_TARGETS = ("pooled-norm", "mean-norm")  # the named targets a model without a head (no logits) can take


def wants_hidden_states(model: Any, target: Any) -> bool:
    """Whether ``target`` reads the last hidden state (``pooled-norm``, ``mean-norm``) of a model with a head
    on its base model (a masked LM), whose output holds it only among its ``hidden_states``: then the
    caller sets ``model.config.output_hidden_states``."""
    reads_hidden = any(target is TARGETS[name].function for name in HIDDEN_TARGETS)
    base = getattr(model, "base_model", model)
    return reads_hidden and base is not model and getattr(model, "config", None) is not None


def named_target(name: str) -> NamedTarget:
    """The target ``name`` names; an error listing the names for any other."""
    if name not in TARGETS:
        raise InspectorError(
            f"--target {name}: not a named target; choose from {', '.join(TARGETS)} or name a function of "
            "yours as file.py:fn (fn(out, batch) returns one value per sample)"
        )
    return TARGETS[name]


def text_task(
    kind: str, architecture: str, has_labels: bool, target: Target | None
) -> tuple[str | None, Target | None]:
    """``(task, target)`` for :func:`~inspector.analysis.analyze` on a model folder's ``kind`` of head
    (see the module docstring); ``target``: the user's ``--target`` (kept as given)."""
    if kind == CAUSAL_LM:
        return "causal-lm", target
    if kind == CLASSIFIER:
        if has_labels:
            return "classification", target
        return None, target if target is not None else predicted_logit
    if target is None:
        raise InspectorError(
            f"{architecture} has no head to explain by default: pass --target NAME ({', '.join(HIDDEN_TARGETS)}) "
            "or --target file.py:fn"
        )
    return None, target

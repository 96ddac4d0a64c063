"""``target(out, batch)`` and ``metric(out, batch)`` receive the user's own batch (issue 19, part 5).

The batch a user's function sees is the one their loader yielded (a dict, an ``(x, y)`` tuple or a bare
tensor), with its tensors on the model's device; where an attribution substitutes the attributed input,
the substitute is in the batch the target sees (it is the input the model was called with). Every
value is checked against one computed here from the loader's own tensors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import inspector
from inspector.analysis import AnalysisOptions
from inspector.analysis.attribution import attribute
from inspector.analysis.inputs import Batch, as_source, make_adapter, to_batch
from inspector.analysis.task import make_task

ONLY_PARAMETERS = AnalysisOptions(sections=("parameters",))


class _TokenModel(nn.Module):
    """Embedding, masked mean over the real positions, a hidden layer, 3 logits: ``forward(input_ids,
    attention_mask)``; records the ids of its last call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(12, 6)
        self.hidden = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.seen.append(input_ids)
        m = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * m).sum(1) / m.sum(1)
        return self.head(torch.relu(self.hidden(pooled)))


def _dict_batches() -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for lengths in ([5, 3, 2, 4], [2, 5, 5]):
        ids = torch.randint(1, 12, (len(lengths), 5), generator=gen)
        mask = (torch.arange(5)[None] < torch.tensor(lengths)[:, None]).long()
        labels = torch.randint(0, 3, (len(lengths),), generator=gen)
        out.append({"input_ids": ids * mask, "attention_mask": mask, "labels": labels})
    return out


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def _xy() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(30, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen)


# ------------------------------------------------------------------------------- the three loader shapes


def test_dict_batch_target_and_metric_read_attention_mask_and_labels() -> None:
    model = _TokenModel().eval()
    batches = _dict_batches()
    seen: list[dict[str, torch.Tensor]] = []

    def target(out: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(batch)
        # the true class's logit times the number of real tokens: needs both keys
        return out.gather(1, batch["labels"][:, None])[:, 0] * batch["attention_mask"].sum(1)

    def metric(out: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (out.argmax(1) == batch["labels"]).float() * batch["attention_mask"][:, 0]

    # without metric= a custom task is scored by its mean target: the target's values, through the evaluator
    by_target = inspector.analyze(model, batches, target=target, options=ONLY_PARAMETERS)
    by_metric = inspector.analyze(model, batches, target=target, metric=metric, options=ONLY_PARAMETERS)
    with torch.no_grad():
        outs = [model(b["input_ids"], b["attention_mask"]) for b in batches]
    targets = torch.cat(
        [o.gather(1, b["labels"][:, None])[:, 0] * b["attention_mask"].sum(1) for o, b in zip(outs, batches)]
    )
    correct = torch.cat([(o.argmax(1) == b["labels"]).float() for o, b in zip(outs, batches)])
    assert by_target.data is not None and by_metric.data is not None
    assert by_target.data.metric == pytest.approx(targets.mean().item(), rel=1e-6)
    assert by_metric.data.metric == pytest.approx(correct.mean().item())
    assert seen, "the target was never called"
    for batch in seen:
        assert isinstance(batch, dict) and list(batch) == ["input_ids", "attention_mask", "labels"]
    evaluated = seen[-len(batches) :]  # the evaluation's pass: each loader batch whole, as the loader gave it
    for batch, original in zip(evaluated, batches):
        for key in original:
            assert torch.equal(batch[key], original[key])


def test_tuple_batch_target_and_metric_read_x_and_y() -> None:
    model = _mlp().eval()
    X, y = _xy()
    loader = [(X[:16], y[:16]), (X[16:], y[16:])]
    kinds: set[type] = set()

    def target(out: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        kinds.add(type(batch))
        x, labels = batch
        return out.gather(1, labels[:, None])[:, 0] + x[:, 0]

    by_target = inspector.analyze(model, loader, target=target, options=ONLY_PARAMETERS)
    by_metric = inspector.analyze(
        model,
        loader,
        target=target,
        metric=lambda out, batch: (out.argmax(1) == batch[1]).float(),
        options=ONLY_PARAMETERS,
    )
    with torch.no_grad():
        out = model(X)
    assert by_target.data is not None and by_metric.data is not None
    assert by_target.data.metric == pytest.approx((out.gather(1, y[:, None])[:, 0] + X[:, 0]).mean().item(), rel=1e-6)
    assert by_metric.data.metric == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert kinds == {tuple}
    lists = [[X[:16], y[:16]]]  # a list batch stays a list
    assert isinstance(as_source(lists).first().user, list)


def test_tensor_batch_target_and_metric_get_the_tensor() -> None:
    model = _mlp().eval()
    X, _ = _xy()
    seen: list[torch.Tensor] = []

    def target(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch)
        return out[:, 0] + batch[:, 0]

    loader = [X[:10], X[10:]]
    by_target = inspector.analyze(model, loader, target=target, options=ONLY_PARAMETERS)
    by_metric = inspector.analyze(
        model, loader, target=target, metric=lambda out, batch: out[:, 1] * batch[:, 1], options=ONLY_PARAMETERS
    )
    with torch.no_grad():
        out = model(X)
    assert by_target.data is not None and by_metric.data is not None
    assert by_target.data.metric == pytest.approx((out[:, 0] + X[:, 0]).mean().item(), rel=1e-6)
    assert by_metric.data.metric == pytest.approx((out[:, 1] * X[:, 1]).mean().item(), rel=1e-6)
    assert seen and all(isinstance(b, torch.Tensor) for b in seen)


def test_float64_inputs_reach_the_target_in_the_models_dtype() -> None:
    model = _mlp().eval()
    X, y = _xy()
    dtypes: set[torch.dtype] = set()

    def metric(out: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        dtypes.add(batch[0].dtype)
        return (out.argmax(1) == batch[1]).float()

    inspector.analyze(model, [(X.double(), y)], metric=metric, options=ONLY_PARAMETERS)
    assert dtypes == {torch.float32}


# ------------------------------------------------------------------------------- the batch's life


def test_user_batch_survives_rows_to_and_concat() -> None:
    raw = _dict_batches()[0]
    batch = to_batch(raw)
    assert list(batch.user) == ["input_ids", "attention_mask", "labels"]
    part = batch.rows(slice(1, 3)).to("cpu")
    assert torch.equal(part.user["attention_mask"], raw["attention_mask"][1:3])
    assert torch.equal(part.user["labels"], raw["labels"][1:3])
    both = Batch.concat([batch.rows(slice(0, 1)), batch.rows(slice(2, 4))])
    assert torch.equal(both.user["input_ids"], raw["input_ids"][[0, 2, 3]])
    assert torch.equal(both.user["labels"], raw["labels"][[0, 2, 3]])
    assert isinstance(to_batch((raw["input_ids"], raw["labels"])).user, tuple)
    assert isinstance(to_batch(raw["input_ids"]).user, torch.Tensor)
    assert Batch(torch.zeros(2, 3), torch.zeros(2)).user[1].shape == (2,)  # array data: (X, y)


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation"])
def test_substituted_inputs_are_what_the_target_sees(method: str) -> None:
    """Captum calls the model with interpolated (or ablated) inputs: the batch the target receives holds
    exactly those inputs, and the labels expanded with them."""
    model = _mlp().eval()
    X, y = _xy()
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    forwarded: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda _m, args: forwarded.append(args[0]))

    def target(out: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        calls.append(batch)
        return out.gather(1, batch[1][:, None])[:, 0]

    try:
        source = as_source((X[:6], y[:6]))
        first = source.first()
        task = make_task(None, first, target=target)
        attribute(model, method, first, task, make_adapter(model, first), n_steps=4)
    finally:
        handle.remove()
    assert calls and len(calls) == len(forwarded)
    substituted = 0
    for (x, labels), given in zip(calls, forwarded):
        assert torch.equal(x, given)  # the input the model was called with
        assert labels.shape[0] == x.shape[0]
        repeats = x.shape[0] // 6
        assert torch.equal(labels, y[:6].repeat(repeats))  # Captum expands the extra arguments by repeating
        substituted += not torch.equal(x, X[:6].repeat(repeats, 1))
    assert substituted > 0


def test_token_attribution_target_gets_the_dict() -> None:
    model = _TokenModel().eval()
    batch = as_source(_dict_batches()).first()
    seen: list[dict[str, torch.Tensor]] = []

    def target(out: torch.Tensor, user: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(user)
        return out.gather(1, user["labels"][:, None])[:, 0] * user["attention_mask"].sum(1)

    task = make_task(None, batch, target=target)
    attribute(model, "integrated_gradients", batch, task, make_adapter(model, batch), n_steps=4)
    assert seen and all(set(u) == {"input_ids", "attention_mask", "labels"} for u in seen)
    for u in seen:
        assert u["attention_mask"].shape == u["input_ids"].shape and u["labels"].shape[0] == u["input_ids"].shape[0]

"""Pruning for any task, model and data: regression curves in MSE and R², streamed sources, the
neuron scope's consumers found by tensor identity (a transformer's query is not its key's input),
a CNN's dense head, and a custom target and metric.

Expected numbers come from a numpy re-implementation in float64 written from the definitions
(sort |w|, zero the floor(s * N) smallest; zero the weakest rows by L2 norm and their consumers'
columns; plain forward; MSE = SSE / n, R² = 1 - SSE / SST) or from the planted structure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from inspector.analysis import pruning as P
from inspector.analysis.inputs import as_source
from inspector.analysis.parameters import count_parameters
from inspector.analysis.pruning import neuron_plan, prune, pruning_sweep
from inspector.analysis.task import make_task
from inspector.errors import InspectorError
from inspector.models import MLPConfig, build_mlp
from tests.helpers import numpy_prune
from tests.models import digits_loader, lenet_digits, padded_batches, plant_dead, shared_relu, tiny_bert

SPARSITIES = (0.0, 0.2, 0.5, 0.8)


# --------------------------------------------------------------------------- regression


class FunctionalMLP(nn.Module):
    """fc1 - torch.relu - fc2 - F.relu - fc3: activations only the torch.fx graph can show."""

    def __init__(self, d: int = 8, h1: int = 16, h2: int = 8) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, h1), nn.Linear(h1, h2), nn.Linear(h2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(torch.relu(self.fc1(x)))))


def _regression_data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = 3 x2 - 2 x5 + noise`` on 8 standard-normal features."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=gen)
    y = 3 * X[:, 2] - 2 * X[:, 5] + 0.1 * torch.randn(n, generator=gen)
    return X, y


def _trained(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int = 300) -> nn.Module:
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        optimiser.zero_grad()
        F.mse_loss(model(X)[:, 0], y).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def regression_models():
    X, y = _regression_data()
    torch.manual_seed(0)
    mlp = _trained(build_mlp(MLPConfig(8, (16, 8), 1)), X, y)
    torch.manual_seed(1)
    functional = _trained(FunctionalMLP(), X, y)
    return {"module relu": mlp, "functional relu": functional}, X, y


def _layers64(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (m.weight.detach().double().numpy().copy(), m.bias.detach().double().numpy().copy())
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]


def _numpy_forward(layers, X):
    h = np.asarray(X, np.float64)
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


@pytest.mark.parametrize("kind", ["module relu", "functional relu"])
def test_regression_curves_are_mse_and_r2_of_the_pruned_weights(regression_models, kind):
    models, X, y = regression_models
    model = models[kind]
    report = pruning_sweep(model, (X, y), sparsities=SPARSITIES)
    assert (report.metric_name, report.loss_name) == ("R²", "MSE")
    assert report.baseline_metric > 0.95  # the model learned y: R² is a meaningful scale here
    y64 = y.double().numpy()
    sst = float(((y64 - y64.mean()) ** 2).sum())
    layers = _layers64(model)
    for curve in report.curves:
        for s, mse, r2 in zip(curve.sparsity, curve.loss, curve.metric):
            pred = _numpy_forward(numpy_prune(layers, s, curve.scope), X.numpy())[:, 0]
            sse = float(((pred - y64) ** 2).sum())
            assert mse == pytest.approx(sse / len(y64), rel=1e-5, abs=1e-7), (curve.scope, s)
            assert r2 == pytest.approx(1 - sse / sst, abs=1e-5), (curve.scope, s)
    assert report.curve("neuron").metric[-1] < report.baseline_metric - 0.1  # 80% of neurons do cost R²


def test_regression_finetuning_uses_mse_and_keeps_pruned_weights_at_zero(regression_models):
    models, X, y = regression_models
    model = models["module relu"]
    pruned = prune(model, 0.8, "global")
    tuned = P.prune_and_finetune(model, 0.8, "global", X, y, epochs=3, lr=1e-2)
    for a, b in zip(P._weights(pruned), P._weights(tuned)):
        assert torch.equal(a.weight == 0, b.weight == 0)
    with torch.no_grad():
        before = F.mse_loss(pruned(X)[:, 0], y)
        after = F.mse_loss(tuned(X)[:, 0], y)
    assert after < before  # MSE descended: the regression loss, not cross-entropy on a float target
    report = pruning_sweep(
        model, (X, y), sparsities=(0.0, 0.8), scopes=("global",), finetune=(X, y), finetune_epochs=3, finetune_lr=1e-2
    )
    y64 = y.double().numpy()
    with torch.no_grad():
        sse = float(((tuned(X)[:, 0].double().numpy() - y64) ** 2).sum())
    assert report.curve("global").finetuned_metric[1] == pytest.approx(
        1 - sse / float(((y64 - y64.mean()) ** 2).sum()), abs=1e-9
    )


# --------------------------------------------------------------------------- streamed sources


def test_loader_and_list_of_batches_give_the_curves_of_the_arrays(regression_models):
    models, X, y = regression_models
    model = models["module relu"]
    arrays = pruning_sweep(model, (X.numpy(), y.numpy()), sparsities=SPARSITIES)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=37)
    batches = [(X[i : i + 50], y[i : i + 50]) for i in range(0, len(X), 50)]
    old_call = pruning_sweep(model, X, y, sparsities=SPARSITIES)  # the (model, X, y) form
    for other in (
        pruning_sweep(model, loader, sparsities=SPARSITIES),
        pruning_sweep(model, batches, sparsities=SPARSITIES),
        old_call,
    ):
        assert other.n_samples == arrays.n_samples == len(X)
        # float32 matrix products may round differently in batches of another size: 1e-6 relative
        assert other.baseline_metric == pytest.approx(arrays.baseline_metric, abs=1e-6)
        for a, b in zip(arrays.curves, other.curves):
            np.testing.assert_allclose(b.metric, a.metric, rtol=0, atol=1e-6)
            np.testing.assert_allclose(b.loss, a.loss, rtol=1e-6)
            np.testing.assert_array_equal(b.parameters_left, a.parameters_left)


def test_classification_from_a_loader_counts_the_same_correct_samples():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (20, 12), 3)).eval()
    X, y = torch.randn(300, 10), torch.randint(0, 3, (300,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=64)
    arrays, streamed = (
        pruning_sweep(model, X, y, sparsities=SPARSITIES),
        pruning_sweep(model, loader, sparsities=SPARSITIES),
    )
    assert (streamed.metric_name, streamed.loss_name) == ("accuracy", "cross-entropy")
    for a, b in zip(arrays.curves, streamed.curves):
        np.testing.assert_array_equal(b.metric, a.metric)  # a count of correct samples over 300: exact


# --------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("transformers")
    model = tiny_bert(hidden_size=32, intermediate_size=37, num_labels=3)
    batches = padded_batches(n_batches=3, batch_size=4, width=10, num_labels=3)
    return model, batches


def test_bert_neuron_scope_prunes_intermediate_neurons_and_never_a_key_column(bert):
    model, batches = bert
    plan = neuron_plan(model, as_source(batches).first())
    blocks = [f"bert.encoder.layer.{i}" for i in range(2)]
    assert plan.hidden == (*(f"{b}.intermediate.dense" for b in blocks), "bert.pooler.dense")
    assert dict(plan.consumers) == {
        **{f"{b}.intermediate.dense": (f"{b}.output.dense",) for b in blocks},
        "bert.pooler.dense": ("classifier",),
    }
    pruned = prune(model, 0.5, "neuron", data=batches)
    before, after = dict(model.named_modules()), dict(pruned.named_modules())
    touched = set()
    for b in blocks:
        inter, out = f"{b}.intermediate.dense", f"{b}.output.dense"
        weakest = torch.argsort(before[inter].weight.norm(dim=1), stable=True)[: math.floor(0.5 * 37)]
        removed = after[inter].weight.abs().sum(1) == 0
        assert set(torch.nonzero(removed).flatten().tolist()) == set(weakest.tolist())
        assert torch.all(after[inter].bias[removed] == 0)
        zero_columns = after[out].weight.abs().sum(0) == 0
        assert torch.equal(zero_columns, removed)  # output.dense reads intermediate's GELU output
        touched |= {inter, out}
    assert int((after["bert.pooler.dense"].weight.abs().sum(1) == 0).sum()) == 16
    touched |= {"bert.pooler.dense", "classifier"}
    for name, module in before.items():
        if isinstance(module, nn.Linear) and name not in touched:  # query, key, value, attention.output
            assert torch.equal(after[name].weight, module.weight), name
            assert torch.equal(after[name].bias, module.bias), name


def test_bert_sweep_streams_dict_batches_and_matches_the_pruned_copy(bert):
    model, batches = bert
    report = pruning_sweep(model, batches, sparsities=(0.0, 0.5), scopes=("neuron", "global"))
    assert report.n_samples == 12 and report.metric_name == "accuracy"
    pruned = prune(model, 0.5, "neuron", data=batches)
    correct = 0
    with torch.no_grad():
        for batch in batches:
            logits = pruned(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            ).logits
            correct += int((logits.argmax(1) == batch["labels"]).sum())
    assert report.curve("neuron").metric[1] == correct / 12


# --------------------------------------------------------------------------- which layers are hidden


def test_a_shared_relu_module_gives_each_layer_its_own_consumer():
    model = shared_relu()
    plan = neuron_plan(model, as_source(torch.randn(20, 6)).first())
    assert plan.hidden == ("fc1", "fc2") and dict(plan.consumers) == {"fc1": ("fc2",), "fc2": ("out",)}


def test_a_layer_whose_activation_is_the_model_output_is_not_hidden():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1), nn.Sigmoid()).eval()
    batch = as_source(torch.randn(10, 4)).first()
    for plan in (neuron_plan(model, batch), neuron_plan(model)):  # observed, and from the graph alone
        assert plan.hidden == ("0",) and dict(plan.consumers) == {"0": ("2",)}
    pruned = prune(model, 0.5, "neuron", data=torch.randn(10, 4))
    assert torch.equal(pruned[2].bias, model[2].bias)  # the output neuron stays


# --------------------------------------------------------------------------- CNN head


def test_cnn_head_neurons_are_removed_with_their_consumer_columns_and_convs_untouched():
    model = lenet_digits(seed=0)
    loader = digits_loader(n=300, batch_size=100)
    pruned = prune(model, 0.25, "neuron", data=loader)
    for layer, consumer, m in (("fc1", "fc2", 32), ("fc2", "out", 16)):
        w = getattr(model.head, layer).weight
        weakest = torch.argsort(w.norm(dim=1), stable=True)[: math.floor(0.25 * m)]
        removed = torch.zeros(m, dtype=torch.bool)
        removed[weakest] = True
        assert torch.equal(getattr(pruned.head, layer).weight.abs().sum(1) == 0, removed)
        assert torch.equal(getattr(pruned.head, consumer).weight.abs().sum(0) == 0, removed)
    assert torch.equal(pruned.head.out.bias, model.head.out.bias)
    for a, b in zip(model.features.parameters(), pruned.features.parameters()):
        assert torch.equal(a, b)


def test_cnn_planted_dead_head_neuron_is_removed_without_changing_any_prediction():
    model = lenet_digits(seed=0)
    plant_dead(model.head.fc1, 7)
    loader = digits_loader(n=300, batch_size=100)
    dead = {"head.fc1": np.arange(32) == 7}
    report = pruning_sweep(model, loader, sparsities=(0.0,), scopes=("global",), dead_masks=dead)
    assert report.dead_removed_count == 1
    assert report.dead_removed_metric == report.baseline_metric  # ReLU(-10) = 0 fed fc2 nothing before


# --------------------------------------------------------------------------- custom target and metric


def test_custom_target_and_metric_are_evaluated_per_level():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (20, 12), 3)).eval()
    X, y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    first = as_source((X, y)).first()
    agree = make_task(
        None,
        first,
        target=lambda out, batch: out[:, 1],
        metric=lambda out, batch: (out.argmax(1) == batch[1]).float(),  # batch: the (X, y) rows
        metric_name="agreement",
    )
    mean_logit = make_task(None, first, target=lambda out, batch: out[:, 1])
    with_metric = pruning_sweep(model, (X, y), agree, sparsities=SPARSITIES)
    plain = pruning_sweep(model, (X, y), mean_logit, sparsities=SPARSITIES)
    assert (with_metric.metric_name, plain.metric_name, plain.loss_name) == ("agreement", "mean target", None)
    layers = _layers64(model)
    for a, b in zip(with_metric.curves, plain.curves):
        for i, s in enumerate(a.sparsity):
            logits = _numpy_forward(numpy_prune(layers, s, a.scope), X.numpy())
            assert a.metric[i] == pytest.approx(float(np.mean(logits.argmax(1) == y.numpy())), abs=1.01 / len(y))
            assert b.metric[i] == pytest.approx(float(logits[:, 1].mean()), abs=1e-5)
        assert np.all(np.isnan(b.loss))


def test_custom_task_without_a_loss_refuses_finetuning_in_one_line():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (20, 12), 3)).eval()
    X, y = torch.randn(50, 10), torch.randint(0, 3, (50,))
    task = make_task(None, as_source((X, y)).first(), target=lambda out, batch: out[:, 1])
    with pytest.raises(InspectorError, match="fine-tuning needs a loss") as caught:
        pruning_sweep(model, (X, y), task, sparsities=(0.0, 0.5), finetune=(X, y), finetune_epochs=1)
    assert "\n" not in str(caught.value)
    with pytest.raises(InspectorError, match="fine-tuning needs a loss"):
        P.prune_and_finetune(model, 0.5, "global", (X, y), epochs=1, task=task)


# --------------------------------------------------------------------------- a tied LM head


class TiedLM(nn.Module):
    """emb - fc - GELU - proj - head, the head's weight tied to the embedding table (its bias its own)."""

    def __init__(self, vocab: int = 30, d: int = 8, h: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc, self.act, self.proj = nn.Linear(d, h), nn.GELU(), nn.Linear(h, d)
        self.head = nn.Linear(d, vocab)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(self.act(self.fc(self.emb(ids))))).mean(1)


def test_a_head_tied_to_an_embedding_is_never_pruned_and_never_counted():
    torch.manual_seed(0)
    model = TiedLM().eval()
    ids, y = torch.randint(0, 30, (60, 5)), torch.randint(0, 30, (60,))
    table = model.emb.weight.detach().clone()
    report = pruning_sweep(model, (ids, y), sparsities=SPARSITIES)
    dense = [model.fc, model.proj]
    biases = sum(layer.bias.numel() for layer in (*dense, model.head))
    weights = [layer.weight.detach().double().numpy() for layer in dense]
    n = sum(w.size for w in weights)
    assert report.total_parameters == n + biases == count_parameters(model).linear_parameters
    for curve in report.curves:
        assert curve.parameters_left[0] == report.total_parameters
    flat = np.abs(np.concatenate([w.reshape(-1) for w in weights]))
    for i, s in enumerate(SPARSITIES):
        dropped = np.zeros(n, dtype=bool)
        dropped[np.argsort(flat, kind="stable")[: math.floor(s * n)]] = True
        assert report.curve("global").parameters_left[i] == n - int(dropped.sum()) + biases
        left = sum(w.size - math.floor(s * w.size) for w in weights) + biases
        assert report.curve("layer").parameters_left[i] == left
        pruned = prune(model, s, "global")
        got = np.concatenate([layer.weight.detach().double().numpy().reshape(-1) for layer in (pruned.fc, pruned.proj)])
        np.testing.assert_array_equal(got == 0, dropped)
        for scope in P.SCOPES:
            pruned = prune(model, s, scope, data=(ids, y))
            assert pruned.head.weight is pruned.emb.weight
            assert torch.equal(pruned.emb.weight, table)
            assert torch.equal(pruned.head.bias, model.head.bias)
    assert torch.equal(model.emb.weight, table)

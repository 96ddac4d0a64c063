"""Feature importance beyond the tabular classifier: regression, images, token ids (issue 9).

Every expected number is known from first principles: a regression target that only
features 2 and 5 move, Integrated Gradients' completeness checked against direct
forward passes of the input and the reference, numpy recomputations of the means.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis.importance import (
    METHODS,
    attribute,
    conductance,
    importance_report,
    output_layer,
)
from inspector.analysis.inputs import Batch, as_source, make_adapter
from inspector.analysis.sections.importance import importance_findings
from inspector.analysis.task import make_task
from inspector.results import from_json_and_arrays, to_json_and_arrays
from tests.models import digits_images, lenet_digits, padded_batch, shared_relu, tiny_bert

# --------------------------------------------------------------------------- regression


def _regression_data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``X`` ``(n, 8)`` standard normal and ``y = 3 x2 - 2 x5 + 0.01 noise`` ``(n,)`` float32."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=gen)
    y = 3 * X[:, 2] - 2 * X[:, 5] + 0.01 * torch.randn(n, generator=gen)
    return X, y


def _closed_form_linear(X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """``nn.Linear(8, 1)`` with the least-squares weights of ``y`` on ``X`` (closed form)."""
    design = torch.cat([X, torch.ones(len(X), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()[:, None]).solution[:, 0]
    model = nn.Sequential(nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.copy_(solution[:8][None].float())
        model[0].bias.fill_(float(solution[8]))
    return model.eval()


@pytest.fixture(scope="module")
def regression():
    X, y = _regression_data()
    return _closed_form_linear(X, y), X, y


def test_closed_form_weights_are_3_and_minus_2(regression):
    model, _, _ = regression
    w = model[0].weight.detach()[0]
    assert w[2].item() == pytest.approx(3.0, abs=0.01) and w[5].item() == pytest.approx(-2.0, abs=0.01)
    assert np.abs(np.delete(w.numpy(), [2, 5])).max() < 0.01


@pytest.mark.parametrize("task", [None, "regression"])
def test_every_method_ranks_features_2_and_5_first_on_a_regression(regression, task):
    model, X, y = regression
    report = importance_report(model, (X, y), task, n_steps=16, max_samples=200, with_conductance=False)
    assert report.task == "regression"  # inferred from the float targets, or as given
    for m in report.methods:
        assert m.error is None, (m.method, m.error)
        assert m.ranking[:2].tolist() == [2, 5], m.method  # |3| > |-2| > the rest
        assert m.per_class is None
        others = np.delete(m.global_importance, [2, 5])
        assert others.max() < 0.02 * m.global_importance[5], m.method


def test_regression_integrated_gradients_is_w_times_x(regression):
    model, X, y = regression
    w, b = model[0].weight.detach()[0], model[0].bias.detach()
    a, delta = attribute(model, "integrated_gradients", Batch(X[:30], y[:30]), n_steps=16)
    np.testing.assert_allclose(a.detach().numpy(), (w * X[:30]).numpy(), rtol=1e-5, atol=1e-6)
    # completeness: the row sums are f(x) - f(0) = w.x
    np.testing.assert_allclose(a.sum(dim=1).detach().numpy(), (X[:30] @ w).numpy(), rtol=1e-5, atol=1e-5)
    assert delta.abs().max() < 1e-5 and torch.isfinite(b).all()


def test_a_target_callable_gives_the_same_importance_as_regression(regression):
    model, X, y = regression
    first = as_source((X, y)).first()
    custom = make_task(None, first, target=lambda out, batch: out[:, 0])
    assert custom.kind == "custom"
    methods = ("integrated_gradients", "saliency", "feature_ablation")
    a = importance_report(
        model, (X, y), "regression", methods=methods, n_steps=8, max_samples=100, with_conductance=False
    )
    b = importance_report(model, (X, y), custom, methods=methods, n_steps=8, max_samples=100, with_conductance=False)
    assert b.task == "custom"
    for ma, mb in zip(a.methods, b.methods):
        np.testing.assert_allclose(mb.global_importance, ma.global_importance, rtol=1e-6)
        np.testing.assert_allclose(mb.mean_attribution, ma.mean_attribution, rtol=1e-6, atol=1e-9)
        assert mb.ranking[:2].tolist() == [2, 5]


@pytest.mark.slow
def test_a_trained_regression_mlp_ranks_features_2_and_5_first():
    X, y = _regression_data(n=256, seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.mse_loss(model(X)[:, 0], y).backward()
        optimiser.step()
    model.eval()
    assert nn.functional.mse_loss(model(X)[:, 0], y).item() < 0.05  # it learned the target
    report = importance_report(model, (X, y), n_steps=8, max_samples=128)
    for m in report.methods:
        assert m.error is None, (m.method, m.error)
        assert m.ranking[:2].tolist() == [2, 5], m.method
    (layer,) = report.conductance  # the one hidden layer; the output layer is not a hidden layer
    assert layer.layer == "0" and layer.by_class is None and layer.mean_conductance.shape == (32,)
    assert layer.neuron_inputs.shape == (32, 8) and layer.neuron_inputs_skipped is None
    # completeness: the conductances sum to f(x) - f(0) on every sample, off by a ReLU-kink path error
    with torch.no_grad():
        change = (model(X[:128]) - model(torch.zeros(1, 8)))[:, 0].numpy()
    assert layer.mean_conductance.sum() == pytest.approx(change.mean(), abs=0.05 * float(np.abs(change).mean()))


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def lenet():
    return lenet_digits()  # random weights: every identity checked here holds for any weights


def test_image_attributions_keep_the_images_shape_and_importance_is_their_mean(lenet):
    images, labels = digits_images(48)
    report = importance_report(
        lenet, (images, labels), methods=("integrated_gradients", "saliency"), n_steps=16, with_conductance=False
    )
    assert report.input_kind == "array" and report.input_shape == (1, 8, 8) and report.n_samples == 48
    assert report.example_inputs.shape == (16, 1, 8, 8)
    np.testing.assert_array_equal(report.example_inputs, images[:16].numpy())
    np.testing.assert_array_equal(report.example_labels, labels[:16].numpy())
    assert report.feature_label(10) == "(0, 1, 2)"  # flattened in the input's order: channel, row, column
    for m in report.methods:
        assert m.examples.shape == (16, 1, 8, 8)
        assert m.global_importance.shape == (64,) and m.per_class.shape == (10, 64)
        direct, _ = attribute(lenet, m.method, Batch(images, labels), n_steps=16)
        direct = direct.detach().numpy()
        np.testing.assert_allclose(m.examples, direct[:16], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(m.global_importance, np.abs(direct).reshape(48, 64).mean(axis=0), rtol=1e-5)
        rows = labels.numpy() == 3
        np.testing.assert_allclose(m.per_class[3], np.abs(direct[rows]).reshape(-1, 64).mean(axis=0), rtol=1e-5)


def test_image_integrated_gradients_are_complete(lenet):
    images, labels = digits_images(20)
    a, delta = attribute(lenet, "integrated_gradients", Batch(images, labels), n_steps=128)
    assert a.shape == images.shape
    with torch.no_grad():
        change = (lenet(images) - lenet(torch.zeros(1, 1, 8, 8))).gather(1, labels[:, None])[:, 0]
    total = a.detach().sum(dim=(1, 2, 3))
    # Captum's delta is exactly the completeness error, checked here against direct forward passes
    np.testing.assert_allclose(delta.numpy(), (total - change).numpy(), atol=1e-4)
    assert delta.abs().mean() < 0.02 * change.abs().mean()  # ReLU and max-pool kinks: a small path error


@pytest.mark.slow
def test_the_lenet_head_is_the_hidden_layers_and_conductance_covers_it(lenet):
    images, labels = digits_images(20)
    batch = Batch(images, labels)
    assert output_layer(lenet, batch) == "head.out"
    task, adapter = make_task("classification", batch), make_adapter(lenet, batch)
    layers = conductance(lenet, [batch], task, adapter, n_steps=8, n_classes=10, neuron_samples=4)
    assert [c.layer for c in layers] == ["head.fc1", "head.fc2"]
    fc1, fc2 = layers
    assert fc1.by_class.shape == (10, 32) and fc1.neuron_inputs.shape == (32, 64)
    assert fc2.by_class.shape == (10, 16) and fc2.neuron_inputs.shape == (16, 64)
    fine = conductance(lenet, [batch], task, adapter, n_steps=128, n_classes=10, neuron_samples=0)
    assert all(c.neuron_inputs_skipped == "not asked for (neuron_samples=0)" for c in fine)
    with torch.no_grad():
        change = (lenet(images) - lenet(torch.zeros(1, 1, 8, 8))).gather(1, labels[:, None])[:, 0].double().numpy()
    for coarse, layer in zip(layers, fine):  # every path crosses each head layer: a path sum's error only
        assert layer.completeness_gap < coarse.completeness_gap / 5  # shrinks like 1 / n_steps
        assert layer.completeness_gap < 0.03 * np.abs(change).mean()
        for c in (0, 3):  # a class's conductances add up to its mean logit change
            rows = labels.numpy() == c
            assert layer.by_class[c].sum() == pytest.approx(change[rows].mean(), abs=0.05 * np.abs(change).mean())


# --------------------------------------------------------------------------- token ids


JUNK = 7  # an id placed only at padded positions: never a real token here


def _token_batches(num_labels: int | None) -> list[dict[str, torch.Tensor]]:
    """Two padded dict batches of different widths; padded positions hold :data:`JUNK` (which no
    real position holds), so what the mask leaves out is visible."""
    out = []
    for seed, lengths in ((0, [9, 4, 6, 2]), (1, [5, 3, 5])):
        batch = padded_batch(lengths, num_labels=num_labels, seed=seed)
        ids = batch["input_ids"]
        ids[ids == JUNK] = JUNK + 1
        ids[batch["attention_mask"] == 0] = JUNK
        out.append(batch)
    return out


def _bert_target(out, batch):
    return out.last_hidden_state[:, 0, :3].sum(dim=1)


@pytest.mark.parametrize("num_labels", [None, 3])
def test_token_integrated_gradients_are_zero_on_padding_and_complete(num_labels):
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=num_labels)
    raw = _token_batches(num_labels)[0]
    source = as_source(raw)
    batch = source.first()
    task = make_task(None, batch, target=None if num_labels else _bert_target)
    adapter = make_adapter(model, batch)
    assert adapter.kind == "tokens" and adapter.pad_id == 0
    a, delta = attribute(model, "integrated_gradients", batch, task, adapter, n_steps=64)
    assert a.shape == batch.inputs.shape
    assert torch.all(a[~batch.mask] == 0)  # exactly zero where padded
    assert torch.all(a[batch.mask] != 0)
    reference = torch.where(batch.mask, torch.zeros_like(batch.inputs), batch.inputs)
    with torch.no_grad():
        f_x = task.target(batch.call(model), batch)
        f_ref = task.target(batch.call(model, reference), batch)
    total = a.detach().sum(dim=1)
    # completeness on the embedding output: the per-token sums are f(x) - f(reference), off by delta
    np.testing.assert_allclose(total - (f_x - f_ref), delta, atol=1e-5)
    assert delta.abs().max() < 1e-3 * (f_x - f_ref).abs().mean() + 1e-6


def test_token_global_importance_is_per_distinct_real_token():
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=3)
    raw = _token_batches(3)
    report = importance_report(
        model, raw, methods=("integrated_gradients", "saliency"), n_steps=16, with_conductance=False
    )
    assert report.input_kind == "tokens" and report.task == "classification" and report.n_samples == 7
    ids = [b["input_ids"] for b in raw]
    masks = [b["attention_mask"].bool() for b in raw]
    distinct = np.unique(np.concatenate([i[m].numpy() for i, m in zip(ids, masks)]))
    np.testing.assert_array_equal(report.token_ids, distinct)
    assert JUNK not in report.token_ids.tolist()  # only ever padding
    assert report.feature_names == tuple(f"#{i}" for i in distinct)
    source = as_source(raw)
    batches = list(source)
    task, adapter = make_task(None, batches[0]), make_adapter(model, batches[0])
    for m in report.methods:
        assert m.global_importance.shape == (len(distinct),) and m.per_class.shape == (3, len(distinct))
        scores = [attribute(model, m.method, b, task, adapter, n_steps=16)[0].detach().numpy() for b in batches]
        flat_ids = np.concatenate([i[k].numpy() for i, k in zip(ids, masks)])
        flat = np.concatenate([s[k.numpy()] for s, k in zip(scores, masks)])
        for j, token in enumerate(distinct):
            assert m.global_importance[j] == pytest.approx(np.abs(flat[flat_ids == token]).mean(), rel=1e-5)
        assert m.examples.shape == (7, 9)  # the first samples, padded to the widest batch
        np.testing.assert_allclose(m.examples[:4], scores[0], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(m.examples[4:, :5], scores[1], rtol=1e-5, atol=1e-8)
        assert np.all(m.examples[~report.example_mask] == 0)
    lead = report.method("integrated_gradients")
    top = ", ".join(f"#{distinct[j]}" for j in lead.ranking[:3])
    texts = [f.text for f in importance_findings(report, ())]
    assert f"most important tokens by Integrated Gradients: {top}" in texts
    np.testing.assert_array_equal(report.example_inputs[:4], ids[0].numpy())
    np.testing.assert_array_equal(report.example_mask[4:, :5], masks[1].numpy())
    assert not report.example_mask[4:, 5:].any()


class _PooledTokens(nn.Module):
    """ids -> Embedding(20, 6) -> Linear(6, 5) per token -> GELU -> masked mean over tokens -> Linear(5, 1):
    the per-token dense layer has a 3-D output and every path crosses it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 6, padding_idx=0)
        self.dense = nn.Linear(6, 5)
        self.act = nn.GELU()
        self.out = nn.Linear(5, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.act(self.dense(self.embed(input_ids)))
        mask = attention_mask[..., None].float()
        return self.out((h * mask).sum(dim=1) / mask.sum(dim=1))


def test_conductance_of_a_per_token_layer_sums_to_the_output_change():
    model = _PooledTokens().eval()
    raw = padded_batch([6, 3, 5, 2], vocab_size=20, seed=3)
    raw.pop("token_type_ids")
    raw["labels"] = torch.randn(4)
    batch = as_source(raw).first()
    task, adapter = make_task(None, batch), make_adapter(model, batch)
    assert task.kind == "regression" and adapter.kind == "tokens"
    reference = torch.where(batch.mask, torch.zeros_like(batch.inputs), batch.inputs)
    with torch.no_grad():
        change = (batch.call(model) - batch.call(model, reference))[:, 0].numpy()
    (coarse,) = conductance(model, [batch], task, adapter, n_steps=8)
    (fine,) = conductance(model, [batch], task, adapter, n_steps=256)
    assert fine.layer == "dense" and fine.by_class is None and fine.mean_conductance.shape == (5,)
    assert fine.mean_conductance.sum() == pytest.approx(change.mean(), abs=1e-4)
    # a first-order path sum: the gap shrinks like 1 / n_steps
    assert fine.completeness_gap < coarse.completeness_gap / 20
    assert fine.completeness_gap < 0.01 * float(np.abs(change).mean())
    assert fine.neuron_inputs.shape == (0, 0) and "token ids" in fine.neuron_inputs_skipped


class _MeanOfVectors(nn.Module):
    """A float sequence ``(n, T, 4)`` -> Linear(4, 3) per position -> mean over EVERY position ->
    Linear(3, 1): it ignores its attention mask, so only the analysis can keep padding out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.dense = nn.Linear(4, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.dense(inputs_embeds)).mean(dim=1))


def test_padded_float_sequences_get_no_attribution_on_padding():
    model = _MeanOfVectors().eval()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    raw = {
        "inputs_embeds": torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)),
        "attention_mask": mask,
        "labels": torch.randn(3),
    }
    batch = as_source(raw).first()
    a, _ = attribute(model, "saliency", batch)
    assert a.shape == (3, 5, 4)
    assert torch.all(a[mask == 0] == 0) and torch.all(a[mask == 1] != 0)


# --------------------------------------------------------------------------- every kind


def _kinds():
    X, y = _regression_data(n=64)
    images, labels = digits_images(64)
    yield "features", lambda: (_closed_form_linear(X, y), (X, y))
    yield "array", lambda: (lenet_digits(), (images, labels))
    yield "tokens", lambda: (tiny_bert(num_labels=3), _token_batches(3))


@pytest.mark.parametrize("kind", ["features", "array", "tokens"])
def test_the_sanity_check_scores_every_kind(kind):
    if kind == "tokens":
        pytest.importorskip("transformers")
    model, data = dict(_kinds())[kind]()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = importance_report(
        model,
        data,
        methods=("integrated_gradients", "feature_ablation"),
        n_steps=8,
        max_samples=64,
        with_conductance=False,
    )
    assert report.input_kind == kind
    for m in report.methods:
        assert m.error is None, (m.method, m.error)
        assert np.isfinite(m.sanity_correlation) and -1 <= m.sanity_correlation <= 1
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_a_method_that_cannot_apply_says_why_in_one_line_and_the_others_run():
    model = shared_relu()  # one ReLU module used after two layers: DeepLift cannot hook it
    X = torch.randn(60, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(X).argmax(dim=1)
    report = importance_report(model, (X, y), n_steps=8, with_conductance=False)
    assert [m.method for m in report.methods] == list(METHODS)
    failed = report.method("deeplift")
    assert failed.error and "\n" not in failed.error and len(failed.error) <= 300
    assert "used more than once" in failed.error
    assert failed.global_importance.size == 0 and failed.sanity_correlation is None
    for m in report.methods:
        if m.method != "deeplift":
            assert m.error is None, (m.method, m.error)
            assert m.global_importance.shape == (6,) and np.isfinite(m.global_importance).all()


def test_a_token_report_round_trips_through_the_results_format():
    pytest.importorskip("transformers")
    report = importance_report(
        tiny_bert(num_labels=3), _token_batches(3), methods=("saliency",), n_steps=4, with_conductance=False
    )
    doc, arrays = to_json_and_arrays(report)
    back = from_json_and_arrays(doc, arrays)
    assert back.feature_names == report.feature_names and back.input_shape == report.input_shape
    np.testing.assert_array_equal(back.token_ids, report.token_ids)
    np.testing.assert_array_equal(back.example_mask, report.example_mask)
    np.testing.assert_array_equal(back.methods[0].examples, report.methods[0].examples)
    assert back.methods[0].per_class.shape == report.methods[0].per_class.shape

"""Structured removal (inspector.analysis.shrink): the smaller model computes what the masked model
computes, holds exactly the parameters the masked model still has in the removed structures, keeps
masked (with one line why) what has an unknown reader, and never changes its input.

The masked model is built here from the definitions (row j, bias j of the layer and column j of each
consumer zeroed, via the pruning module's masks); the expected sizes are closed forms
(``m * (n + 1)`` per dense layer, 4 numbers per batch-norm entry).
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

import inspector
from inspector.analysis.inputs import as_source
from inspector.analysis.parameters import linear_layers
from inspector.analysis.pruning import apply_masks, neuron_keep, neuron_masks, neuron_plan, parameters_left, prune
from inspector.analysis.shrink import model_size, shrink, shrink_and_finetune, shrink_model
from inspector.analysis.task import task_for_labels
from inspector.core.evaluator import evaluate_arrays, format_metric
from inspector.errors import InspectorError
from inspector.evaluation import eval_data_for
from inspector.models import MLPConfig, build_mlp
from tests.models import digits_loader, lenet_digits, plant_dead

TOL = {"atol": 1e-6, "rtol": 1e-6}


def _masked_and_shrunk(model: nn.Module, data, sparsity: float = 0.5):
    """``(keep, masked model, Shrunk)``: the masked model from the pruning masks, the shrunk one from shrink."""
    batch = as_source(data).first()
    plan = neuron_plan(model, batch)
    (keep,) = neuron_keep(model, plan, (sparsity,))
    masks = neuron_masks(model, keep, plan)
    masked = apply_masks(copy.deepcopy(model), *masks)
    return keep, masked, masks, shrink_model(model, keep, data)


def _out(model: nn.Module, data) -> torch.Tensor:
    with torch.no_grad():
        out = as_source(data).first().call(model.eval())
    return out if isinstance(out, torch.Tensor) else out[0]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


# --------------------------------------------------------------------------- MLP


def _bn_gelu_mlp() -> nn.Module:
    """10 -> 20 -> 12 -> 3, Linear - BatchNorm1d - GELU - Dropout, batch-norm statistics far from (0, 1)
    so that a wrong entry removed would show."""
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(10, (20, 12), 3, activation="gelu", dropout=0.2, batch_norm=True))
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d)):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    return model.eval()


def test_mlp_shrunk_equals_masked_and_holds_the_nonzero_parameters_of_the_masked_model():
    model = _bn_gelu_mlp()
    X = torch.randn(64, 10)
    before = _state(model)
    keep, masked, masks, shrunk = _masked_and_shrunk(model, X, 0.5)
    torch.testing.assert_close(_out(shrunk.model, X), _out(masked, X), **TOL)
    # floor(0.5 * 20) = 10 and floor(0.5 * 12) = 6 neurons go; 10 and 6 stay
    assert dict(shrunk.widths) == {"fc1": (20, 10), "fc2": (12, 6)} and not shrunk.kept_masked
    small = shrunk.model
    assert tuple(small.fc1.weight.shape) == (10, 10) and tuple(small.fc2.weight.shape) == (6, 10)
    assert tuple(small.fc3.weight.shape) == (3, 6) and small.bn1.num_features == 10 and small.bn2.num_features == 6
    # the kept rows are the original's rows, in order; the batch norm keeps the kept neurons' entries
    kept1 = torch.nonzero(keep["fc1"]).flatten()
    assert torch.equal(small.fc1.weight, model.fc1.weight[kept1]) and torch.equal(small.fc1.bias, model.fc1.bias[kept1])
    assert torch.equal(small.bn1.running_mean, model.bn1.running_mean[kept1])
    # closed form: dense m * (n + 1), batch norm 2 parameters per entry
    linear = 10 * (10 + 1) + 6 * (10 + 1) + 3 * (6 + 1)
    assert sum(p.numel() for name, p in small.named_parameters() if name.startswith("fc")) == linear
    assert parameters_left(model, *masks) == linear  # the masked model's nonzero weights + kept biases
    assert model_size(small) == (linear + 2 * (10 + 6), 4 * (linear + 4 * (10 + 6)) + 2 * 8)  # + num_batches_tracked
    assert _unchanged(model, before) and model.fc1.weight.shape == (20, 10)


def test_keep_none_reads_the_neurons_a_neuron_pruned_model_zeroed():
    torch.manual_seed(1)
    model = build_mlp(MLPConfig(8, (16, 8), 4)).eval()
    X = torch.randn(32, 8)
    pruned = prune(model, 0.25, "neuron", data=X)
    smaller = inspector.shrink(pruned, data=X)
    assert smaller.fc1.out_features == 12 and smaller.fc2.out_features == 6 and smaller.fc3.in_features == 6
    torch.testing.assert_close(_out(smaller, X), _out(pruned, X), **TOL)


def test_census_dead_neurons_are_removed_and_the_outputs_do_not_move():
    torch.manual_seed(2)
    model = build_mlp(MLPConfig(8, (16, 8), 4)).eval()
    for j in (3, 11):
        plant_dead(model.fc1, j)  # ReLU(-10) = 0 on every input
    plant_dead(model.fc2, 5)
    X = torch.randn(50, 8)
    dead = {"fc1": np.isin(np.arange(16), (3, 11)), "fc2": np.arange(8) == 5}
    shrunk = shrink_model(model, data=X, dead=dead)
    assert dict(shrunk.widths) == {"fc1": (16, 14), "fc2": (8, 7)}
    torch.testing.assert_close(_out(shrunk.model, X), _out(model, X), **TOL)  # dead: nothing to fold


# --------------------------------------------------------------------------- CNN head


def test_cnn_head_shrinks_and_its_convolutions_stay():
    model = lenet_digits(seed=0)
    images = next(iter(digits_loader(n=200, batch_size=200)))[0]
    before = _state(model)
    _, masked, masks, shrunk = _masked_and_shrunk(model, images, 0.25)
    torch.testing.assert_close(_out(shrunk.model, images), _out(masked, images), **TOL)
    assert dict(shrunk.widths) == {"head.fc1": (32, 24), "head.fc2": (16, 12)}
    head = shrunk.model.head
    assert (head.fc1.in_features, head.fc1.out_features, head.fc2.in_features, head.out.in_features) == (64, 24, 24, 12)
    for a, b in zip(model.features.parameters(), shrunk.model.features.parameters()):
        assert torch.equal(a, b)
    linear = 24 * (64 + 1) + 12 * (24 + 1) + 10 * (12 + 1)
    assert sum(p.numel() for p in head.parameters()) == linear == parameters_left(model, *masks)
    assert _unchanged(model, before)


# --------------------------------------------------------------------------- transformer MLP blocks


def test_bert_intermediate_rows_and_output_columns_go_and_attention_stays():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    model = BertForSequenceClassification(config).eval()
    batch = {"input_ids": torch.randint(0, 60, (4, 9)), "attention_mask": torch.ones(4, 9, dtype=torch.long)}
    before = _state(model)
    _, masked, masks, shrunk = _masked_and_shrunk(model, [batch], 0.5)
    torch.testing.assert_close(_out(shrunk.model, [batch]), _out(masked, [batch]), **TOL)
    expected = {f"bert.encoder.layer.{i}.intermediate.dense": (32, 16) for i in range(2)}
    assert dict(shrunk.widths) == {**expected, "bert.pooler.dense": (16, 8)}  # tanh pooler -> dropout -> classifier
    assert shrunk.model.classifier.in_features == 8 and not shrunk.kept_masked
    for i in range(2):
        layer = shrunk.model.bert.encoder.layer[i]
        assert tuple(layer.intermediate.dense.weight.shape) == (16, 16)  # GELU's 16 kept neurons
        assert tuple(layer.output.dense.weight.shape) == (16, 16)  # their columns in the consumer
        assert torch.equal(layer.attention.self.query.weight, model.bert.encoder.layer[i].attention.self.query.weight)
    # nonzero count of the masked model in the two shrunk pairs = the shrunk pairs' parameters
    pairs = sum(
        p.numel()
        for i in range(2)
        for part in ("intermediate.dense", "output.dense")
        for p in shrunk.model.bert.encoder.layer[i].get_submodule(part).parameters()
    )
    assert pairs == 2 * (16 * (16 + 1) + 16 * (16 + 1))
    dense = sum(p.numel() for _, m in linear_layers(shrunk.model) for p in m.parameters())
    assert dense == parameters_left(model, *masks)  # no weight of a random init is exactly 0
    assert _unchanged(model, before)


def test_gpt2_conv1d_mlp_shrinks_in_its_stored_orientation():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # weights large enough that a wrong column would show
        for p in model.parameters():
            p.normal_(0, 0.5)
    batch = {"input_ids": torch.randint(0, 50, (3, 7))}
    _, masked, _, shrunk = _masked_and_shrunk(model, [batch], 0.5)
    torch.testing.assert_close(_out(shrunk.model, [batch]), _out(masked, [batch]), atol=1e-5, rtol=1e-6)
    mlp = shrunk.model.transformer.h[0].mlp
    assert tuple(mlp.c_fc.weight.shape) == (16, 32) and mlp.c_fc.nf == 32  # (in, out): 32 of 64 neurons kept
    assert tuple(mlp.c_proj.weight.shape) == (32, 16) and mlp.c_proj.nx == 32


# --------------------------------------------------------------------------- unknown readers


class Residual(nn.Module):
    """``a`` feeds ReLU, then both ``b`` and a residual add; ``c`` feeds a LayerNorm (mixes features)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.c, self.ln, self.d = nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 8)
        self.e, self.f, self.out = nn.Linear(8, 12), nn.Linear(12, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = self.b(h) + h
        g = self.d(torch.relu(self.ln(self.c(h))))
        return self.out(self.f(torch.relu(self.e(g))))


def test_a_layer_with_an_unknown_reader_stays_masked_and_says_why_in_one_line():
    torch.manual_seed(3)
    model = Residual().eval()
    X = torch.randn(20, 8)
    _, masked, _, shrunk = _masked_and_shrunk(model, X, 0.5)
    assert shrunk.notes() == [
        "a: its output feeds add with another tensor; kept masked",
        "c: its output feeds layer_norm (which mixes features); kept masked",
    ]
    assert dict(shrunk.widths) == {"e": (12, 6)}  # the plain pair is shrunk
    assert shrunk.model.a.weight.shape == (8, 8) and not shrunk.model.a.weight[~shrunk.bias_masks[0]].any()
    torch.testing.assert_close(_out(shrunk.model, X), _out(masked, X), **TOL)


class Cumulative(nn.Module):
    """``a`` -> ReLU -> a running sum over its features -> ``b``: no layer reads ``a``'s neurons one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)).cumsum(-1))


def test_shrinking_a_pruned_model_says_why_a_layer_without_a_consumer_stays_masked():
    # read off the zeros (keep=None): a has no known consumer, so its zeroed rows are all that tell of its
    # pruning; shrink once passed it over in silence, as if the neuron scope had left it alone
    torch.manual_seed(3)
    model = Cumulative().eval()
    X = torch.randn(20, 8)
    pruned = prune(model, 0.5, "neuron", data=X)
    assert int((pruned.a.weight == 0).all(dim=1).sum()) == 4
    shrunk = shrink_model(pruned, data=X)
    assert shrunk.notes() == ["a: its output feeds cumsum; kept masked"]
    assert dict(shrunk.widths) == {}
    torch.testing.assert_close(_out(shrunk.model, X), _out(pruned, X), **TOL)
    assert shrink_model(model, data=X).notes() == []  # an unpruned model: nothing to say


class TiedConsumer(nn.Module):
    """``a`` -> ReLU -> ``b``, where ``b``'s weight is also ``c``'s (c reads another input)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 3), nn.Linear(8, 3)
        self.c.weight = self.b.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))) + self.c(x.repeat(1, 2))


def test_a_consumer_with_a_tied_weight_keeps_the_layer_masked():
    torch.manual_seed(5)
    model = TiedConsumer().eval()
    X = torch.randn(10, 4)
    _, masked, _, shrunk = _masked_and_shrunk(model, X, 0.5)
    assert shrunk.notes() == ["a: its weights or its consumer's are shared with another module; kept masked"]
    assert shrunk.model.b.weight is shrunk.model.c.weight and shrunk.model.a.out_features == 8
    torch.testing.assert_close(_out(shrunk.model, X), _out(masked, X), **TOL)


def test_finetuning_the_shrunk_model_keeps_its_masked_neurons_at_zero():
    torch.manual_seed(4)
    model = Residual().eval()
    X, y = torch.randn(80, 8), torch.randint(0, 3, (80,))
    shrunk = shrink_and_finetune(model, 0.5, X, y, epochs=2, lr=1e-2)
    small = shrunk.model
    assert small.e.out_features == 6 and small.f.in_features == 6
    dropped = ~shrunk.bias_masks[0]
    assert dropped.sum() == 4 and not small.a.weight[dropped].any() and not small.a.bias[dropped].any()
    assert not torch.equal(small.out.weight, model.out.weight)  # it did train


def test_bad_keep_and_missing_data_are_one_line_errors():
    model = build_mlp(MLPConfig(4, (6,), 2)).eval()
    with pytest.raises(InspectorError, match="not a dense layer"):
        shrink(model, {"nope": np.ones(6, bool)}, torch.randn(3, 4))
    with pytest.raises(InspectorError, match=r"keep\['fc1'\] has shape \(5,\); fc1 has 6 neurons"):
        shrink(model, {"fc1": np.ones(5, bool)}, torch.randn(3, 4))
    with pytest.raises(InspectorError, match="shrink needs data"):
        shrink(model, {"fc1": np.ones(6, bool)})


# --------------------------------------------------------------------------- the CLI writes the smaller model


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_cli_prune_neuron_writes_a_smaller_checkpoint_that_loads_and_shows_its_widths(tmp_path, capsys, suffix):
    from inspector.checkpoints import load
    from inspector.cli import main
    from inspector.evaluation import eval_data_for

    ckpt = tmp_path / "s.pt"
    train = ["train", "--dataset", "synthetic", "--hidden", "16,8", "--epochs", "3", "--out", str(ckpt), "-q"]
    assert main(train) == 0
    out = tmp_path / f"small{suffix}"
    assert main(["prune", str(ckpt), "--sparsity", "0.5", "--scope", "neuron", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    original, small = load(ckpt), load(out)
    d, k = original.config.input_size, original.config.output_size
    before = 16 * (d + 1) + 8 * (16 + 1) + k * (8 + 1)
    after = 8 * (d + 1) + 4 * (8 + 1) + k * (4 + 1)
    assert "removed 12 neurons (fc1 16 -> 8, fc2 8 -> 4)" in printed
    assert f"size: {before:,} -> {after:,} parameters" in printed
    assert small.config.hidden_sizes == (8, 4) and small.kind == "dense-inspector"
    assert sum(p.numel() for p in small.model.parameters()) == after
    # the written model is the masked model, on the test split
    data = eval_data_for(original)
    X = torch.from_numpy(data.X)
    masked = prune(original.model, 0.5, "neuron", data=X)
    torch.testing.assert_close(_out(small.model, X), _out(masked, X), **TOL)
    assert main(["info", str(out), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(layer["in_features"], layer["out_features"]) for layer in layers] == [(d, 8), (8, 4), (4, k)]
    assert main(["info", str(out)]) == 0
    assert re.search(rf"total .* {after:,} ", capsys.readouterr().out)


def test_cli_finetune_trains_the_smaller_model(tmp_path, capsys):
    from inspector.checkpoints import load
    from inspector.cli import main

    ckpt = tmp_path / "s.pt"
    assert main(["train", "--dataset", "synthetic", "--hidden", "16", "--epochs", "3", "--out", str(ckpt), "-q"]) == 0
    out = tmp_path / "tuned.pt"
    args = ["prune", str(ckpt), "--sparsity", "0.75", "--scope", "neuron", "--finetune-epochs", "1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "fc1 16 -> 4" in printed
    original = load(ckpt)
    tuned = load(out)
    untuned = prune(original.model, 0.75, "neuron", data=torch.zeros(2, original.config.input_size))
    # the line says what pruning cost and what fine-tuning recovered, each on the test split
    data = eval_data_for(original)
    X, y = torch.from_numpy(data.X), torch.from_numpy(data.y)
    task = task_for_labels(y)
    scores = [evaluate_arrays(m.eval(), X, y, task).metric for m in (original.model, untuned, tuned.model)]
    before, pruned_only, after = (format_metric(task.metric_name, v) for v in scores)
    expected = f"{task.metric_name} {before} -> {pruned_only} pruned -> {after} after 1 epoch of fine-tuning"
    assert expected in printed
    assert tuned.model.fc1.out_features == 4 == math.ceil(0.25 * 16)
    kept = untuned.fc1.weight.abs().sum(1) != 0
    assert not torch.equal(tuned.model.fc1.weight, untuned.fc1.weight[kept])  # fine-tuned after the cut

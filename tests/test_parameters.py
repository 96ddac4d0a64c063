from __future__ import annotations

import pytest
import torch
from torch import nn
from torchinfo import summary

from inspector.analysis.parameters import count_parameters
from inspector.models import MLPConfig, build_mlp


def test_linear_2_to_5_has_15_parameters_and_10_macs():
    report = count_parameters(nn.Sequential(nn.Linear(2, 5)))
    (layer,) = report.layers
    assert (layer.weights, layer.biases, layer.parameters, layer.macs_per_sample) == (10, 5, 15, 10)
    assert layer.bytes == 15 * 4


def test_closed_form_per_layer_and_total():
    model = build_mlp(MLPConfig(100, (50, 20), 3))
    report = count_parameters(model)
    assert [layer.parameters for layer in report.layers] == [50 * 101, 20 * 51, 3 * 21]
    assert report.total_parameters == 5050 + 1020 + 63 == sum(p.numel() for p in model.parameters())


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                     nn.Sequential(nn.Linear(8, 6), nn.Tanh()))
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        return self.head(self.encoder(x))


@pytest.mark.parametrize("make,n_in", [
    (lambda: build_mlp(MLPConfig(64, (128, 64), 10)), 64),
    (lambda: build_mlp(MLPConfig(12, (7, 5), 4, batch_norm=True)), 12),
    (_Nested, 10),
])
def test_totals_agree_with_torchinfo_and_numel(make, n_in):
    model = make()
    report = count_parameters(model)
    reference = summary(model, input_size=(2, n_in), verbose=0)
    assert report.total_parameters == reference.total_params == sum(p.numel() for p in model.parameters())
    assert report.trainable_parameters == reference.trainable_params


def test_nested_layers_found_and_batch_norm_listed_apart():
    report = count_parameters(_Nested())
    assert [layer.name for layer in report.layers] == ["encoder.0", "encoder.3.0", "head"]
    assert report.layers[2].biases == 0 and report.layers[2].parameters == 18
    assert [(o.name, o.kind, o.parameters) for o in report.other] == [("encoder.1", "BatchNorm1d", 16)]


def test_tied_weights_are_counted_once():
    enc, dec = nn.Linear(6, 6), nn.Linear(6, 6)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.ReLU(), dec)
    report = count_parameters(model)
    assert report.layers[1].tied_to == "0"
    assert report.total_parameters == 36 + 6 + 6 == sum(p.numel() for p in model.parameters())


def test_frozen_layer_is_not_trainable():
    model = build_mlp(MLPConfig(4, (3,), 2))
    model.fc1.requires_grad_(False)
    report = count_parameters(model)
    assert not report.layers[0].trainable and report.layers[1].trainable
    assert report.trainable_parameters == 2 * 4
    assert torch.is_grad_enabled()


def test_layer_rows_add_up_to_the_total_when_a_weight_is_tied():
    enc, dec = nn.Linear(16, 16), nn.Linear(16, 16)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.ReLU(), dec, nn.ReLU(), nn.Linear(16, 4, bias=False))
    report = count_parameters(model)
    expected = 16 * 17 + 16 + 4 * 16  # the shared 16x16 weight once, both biases, the bias-free head
    assert report.total_parameters == expected == sum(p.numel() for p in model.parameters())
    assert sum(layer.parameters for layer in report.layers) == report.linear_parameters == expected
    assert sum(layer.bytes for layer in report.layers) == report.total_bytes == expected * 4
    tied = report.layers[1]
    assert (tied.tied_to, tied.weights, tied.biases, tied.parameters) == ("0", 0, 16, 16)
    assert tied.macs_per_sample == 16 * 16  # a shared weight is still multiplied in every layer that uses it
    assert [layer.formula() for layer in report.layers] == [
        "16 × (16 + 1)", "16 (weight counted in 0)", "4 × 16"]

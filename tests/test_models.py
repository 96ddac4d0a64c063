from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from inspector.analysis.parameters import count_parameters
from inspector.errors import InspectorError
from inspector.models import MLP, MLPConfig, build_mlp, infer_mlp_layout, mlp_from_state_dict


def test_linear_100_to_50_has_5050_parameters():
    (layer,) = count_parameters(nn.Sequential(nn.Linear(100, 50))).layers
    assert (layer.in_features, layer.out_features) == (100, 50)
    assert layer.parameters == 50 * (100 + 1) == 5050


def test_linear_1000_to_500_has_500500_parameters():
    (layer,) = count_parameters(nn.Sequential(nn.Linear(1000, 500))).layers
    assert layer.parameters == 500_500
    assert layer.bytes == 500_500 * 4


@pytest.mark.parametrize("sizes", [(64, (128, 64), 10), (3, (), 2), (10, (7, 5, 3), 4)])
def test_mlp_parameter_count_is_sum_of_m_times_n_plus_one(sizes):
    n_in, hidden, n_out = sizes
    model = build_mlp(MLPConfig(n_in, hidden, n_out))
    chain = (n_in, *hidden, n_out)
    expected = sum(m * (n + 1) for n, m in zip(chain, chain[1:]))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert count_parameters(model).total_parameters == expected


def test_mlp_modules_are_named_and_ordered():
    model = build_mlp(MLPConfig(4, (8, 6), 3, activation="tanh", dropout=0.2, batch_norm=True))
    assert list(dict(model.named_children())) == ["fc1", "bn1", "act1", "drop1", "fc2", "bn2", "act2", "drop2", "fc3"]
    assert isinstance(model.act1, nn.Tanh)
    assert model(torch.zeros(5, 4)).shape == (5, 3)


@pytest.mark.parametrize(
    "activation,cls",
    [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)],
)
def test_every_activation_builds(activation, cls):
    model = build_mlp(MLPConfig(2, (3,), 2, activation=activation))
    assert isinstance(model.act1, cls)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"activation": "swish"}, "unknown activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"hidden_sizes": (0,)}, "positive"),
    ],
)
def test_bad_config_is_a_user_error(kwargs, match):
    base = {"input_size": 4, "hidden_sizes": (3,), "output_size": 2}
    with pytest.raises(InspectorError, match=match):
        MLPConfig(**{**base, **kwargs})


def test_config_round_trips_through_dict():
    config = MLPConfig(4, (8, 6), 3, activation="gelu", dropout=0.1, batch_norm=True)
    assert MLPConfig.from_dict(config.to_dict()) == config


# --- foreign state dicts --------------------------------------------------------------------


def _same_function(a: nn.Module, b: nn.Module, n_in: int) -> None:
    a.eval(), b.eval()
    x = torch.randn(16, n_in, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_sequential_state_dict_is_rebuilt_exactly():
    torch.manual_seed(0)
    foreign = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model = mlp_from_state_dict(foreign.state_dict())
    assert model.config.layer_sizes == (64, 32, 10)
    _same_function(foreign, model, 64)


class _FcNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 9), nn.Linear(9, 7), nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def test_fc_named_state_dict_is_rebuilt_with_given_activation():
    torch.manual_seed(0)
    foreign = _FcNet()
    model = mlp_from_state_dict(foreign.state_dict(), activation="tanh")
    assert model.config.layer_sizes == (5, 9, 7, 2)
    _same_function(foreign, model, 5)


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([nn.Linear(6, 12), nn.Linear(12, 8)])
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def test_nested_module_state_dict_is_rebuilt():
    torch.manual_seed(0)
    foreign = _Nested()
    layout = infer_mlp_layout(foreign.state_dict())
    assert layout.linear_prefixes == ("encoder.layers.0", "encoder.layers.1", "head")
    _same_function(foreign, mlp_from_state_dict(foreign.state_dict()), 6)


def test_sequential_with_batch_norm_is_rebuilt_with_running_stats():
    torch.manual_seed(0)
    foreign = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    foreign.train()
    foreign(torch.randn(32, 4))  # move the running statistics off their defaults
    model = mlp_from_state_dict(foreign.state_dict())
    assert model.config.batch_norm
    _same_function(foreign, model, 4)


def test_natural_key_order_is_used_when_file_order_does_not_chain():
    torch.manual_seed(0)
    foreign = nn.Sequential(
        *[nn.Linear(3, 4), nn.ReLU()] + [m for _ in range(5) for m in (nn.Linear(4, 4), nn.ReLU())] + [nn.Linear(4, 2)]
    )
    shuffled = OrderedDict(sorted(foreign.state_dict().items()))  # "10.weight" sorts before "2.weight"
    assert list(shuffled)[2].startswith("10.")
    _same_function(foreign, mlp_from_state_dict(shuffled), 3)


def test_shapes_that_do_not_chain_are_refused_with_the_shapes():
    state = {
        "a.weight": torch.zeros(8, 4),
        "a.bias": torch.zeros(8),
        "b.weight": torch.zeros(2, 5),
        "b.bias": torch.zeros(2),
    }
    with pytest.raises(InspectorError, match=r"don't chain \(a: 4->8, b: 5->2\)"):
        mlp_from_state_dict(state, source="x.pt")


def test_non_linear_modules_are_refused():
    state = {"conv.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}
    with pytest.raises(InspectorError, match="neither nn.Linear nor BatchNorm1d"):
        mlp_from_state_dict(state)


def test_rebuilt_model_is_an_mlp():
    model = mlp_from_state_dict(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).state_dict())
    assert isinstance(model, MLP)


@pytest.mark.parametrize(
    "config", [MLPConfig(4, (), 2), MLPConfig(4, (3, 5), 2), MLPConfig(6, (10, 8), 3, batch_norm=True, dropout=0.1)]
)
def test_state_shapes_match_a_built_model_without_building_one(config):
    built = {k: tuple(v.shape) for k, v in build_mlp(config).state_dict().items()}
    assert config.state_shapes() == built


@pytest.mark.parametrize(
    "field,value",
    [
        ("input_size", "64"),
        ("hidden_sizes", ["3"]),
        ("batch_norm", "yes"),
        ("output_size", True),
        ("dropout", "0.1"),
        ("colour", 1),
    ],
)
def test_config_from_dict_checks_types(field, value):
    d = MLPConfig(4, (3,), 2).to_dict()
    d[field] = value
    with pytest.raises(InspectorError, match=field):
        MLPConfig.from_dict(d)


def test_tied_weights_rebuild_as_one_shared_parameter():
    """0 20->8, 1 8->8, 2 8->8 sharing 1's weight, 3 8->3 (the file's names): 8*21 + 8*9 + 8 + 3*9 = 275."""
    from inspector.analysis.parameters import count_parameters

    layers = [nn.Linear(20, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)]
    layers[2].weight = layers[1].weight
    source = nn.Sequential(*layers)
    state = source.state_dict()
    model = mlp_from_state_dict(state)
    assert model.get_submodule("2").weight is model.get_submodule("1").weight
    assert count_parameters(model).total_parameters == sum(p.numel() for p in source.parameters()) == 275

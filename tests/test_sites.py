"""Site discovery and the observer the census is built on: which activation follows each nn.Linear,
how that was found, and which (pre-activation, output) pairs each layer is attributed."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from inspector.analysis.activations import activation_census
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import Batch, to_batch
from inspector.analysis.sites import SiteObserver, discover_sites
from inspector.errors import InspectorError
from inspector.models import MLPConfig, build_mlp
from tests.models import (
    HEAD_LAYERS,
    digits_images,
    functional_activations,
    lenet_digits,
    padded_batch,
    shared_relu,
    tiny_bert,
    untraceable,
)


def _x(n: int = 16, d: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _summary(sites):
    return [(s.layer, s.activation, s.found_by, s.module, s.tap, s.shared_with) for s in sites]


def test_one_relu_module_shared_by_two_layers_is_a_site_of_each():
    sites = discover_sites(shared_relu(), Batch(_x()))
    assert _summary(sites) == [
        ("fc1", "relu", "module", "act", "fc1", ("fc2",)),
        ("fc2", "relu", "module", "act", "fc2", ("fc1",)),
        ("out", "none", "output", None, "out", ()),
    ]
    assert [s.counted for s in sites] == [True, True, False]
    assert sites[0].describe() == "relu: module act, shared with fc2"


def test_functional_activations_are_found_in_the_traced_graph():
    sites = discover_sites(functional_activations(), Batch(_x()))
    assert _summary(sites) == [
        ("fc1", "relu", "traced", "relu", "fc1", ()),
        ("fc2", "gelu", "traced", "gelu", "fc2", ()),
        ("fc3", "relu", "traced", "relu", "bn", ()),  # counted on the batch norm's output: the ReLU's input
        ("out", "none", "output", None, "out", ()),
    ]


def test_a_model_that_does_not_trace_leaves_its_activation_unknown_but_counted():
    sites = discover_sites(untraceable(), Batch(_x()))
    assert [(s.layer, s.activation, s.found_by, s.counted) for s in sites] == [
        ("fc1", "unknown", "unknown", True),
        ("out", "none", "output", False),  # seen in the forward pass: its output is the model's output
    ]
    assert sites[0].describe() == "activation unknown: counted on its pre-activation"


class _UsedTwice(torch.nn.Module):
    """fc1's output is used twice: a hand-written swish ``h * sigmoid(h)``; fc2's in a residual ``relu(h) + h``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 6)
        self.fc2 = torch.nn.Linear(6, 6)
        self.out = torch.nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h * torch.sigmoid(h)
        g = self.fc2(h)
        return self.out(torch.relu(g) + g)


def test_a_layer_output_used_twice_is_unknown_not_proven_without_activation():
    sites = discover_sites(_UsedTwice(), Batch(_x()))
    assert [(s.layer, s.activation, s.found_by, s.counted) for s in sites] == [
        ("fc1", "unknown", "unknown", True),
        ("fc2", "unknown", "unknown", True),
        ("out", "none", "output", False),
    ]


def test_without_a_batch_the_graph_alone_proves_an_output_layer_has_no_activation():
    sites = discover_sites(shared_relu())
    assert [(s.layer, s.activation, s.found_by) for s in sites] == [
        ("fc1", "relu", "module"),
        ("fc2", "relu", "module"),
        ("out", "none", "traced-none"),
    ]
    assert sites[2].describe() == "no activation (its output goes on unchanged in the torch.fx graph)"


def test_mlp_sites_pair_each_activation_module_with_its_linear():
    model = build_mlp(MLPConfig(4, (6, 5), 2, activation="tanh", batch_norm=True, dropout=0.2))
    sites = discover_sites(model, Batch(_x(d=4)))
    assert [(s.layer, s.activation, s.found_by, s.module) for s in sites] == [
        ("fc1", "tanh", "module", "act1"),
        ("fc2", "tanh", "module", "act2"),
        ("fc3", "none", "output", None),
    ]


def test_cnn_sites_are_the_dense_head_only():
    images, _ = digits_images(8)
    sites = discover_sites(lenet_digits(), Batch(images))
    assert tuple(s.layer for s in sites if s.counted) == HEAD_LAYERS
    assert [(s.module, s.activation) for s in sites if s.counted] == [("head.act1", "relu"), ("head.act2", "relu")]


@pytest.mark.slow  # importing transformers takes most of it
def test_bert_intermediate_layers_are_gelu_sites_found_by_convention():
    pytest.importorskip("transformers")
    model = tiny_bert(num_hidden_layers=2, intermediate_size=24)
    sites = {s.layer: s for s in discover_sites(model, _bert_batch())}
    for k in range(2):
        site = sites[f"encoder.layer.{k}.intermediate.dense"]
        assert (site.activation, site.found_by, site.out_features) == ("gelu", "convention", 24)
        assert site.module == f"encoder.layer.{k}.intermediate.intermediate_act_fn"
    # BERT does not trace: the forward pass's calls show that the attention projections and the block
    # outputs go on with no activation (into attention, a residual sum): listed, not censused
    for k in range(2):
        for part in ("attention.self.query", "attention.self.key", "attention.self.value"):
            site = sites[f"encoder.layer.{k}.{part}"]
            assert (site.activation, site.found_by, site.counted) == ("none", "called-none", False)
        for part in ("attention.output.dense", "output.dense"):
            assert sites[f"encoder.layer.{k}.{part}"].found_by == "called-none"
    assert sites["encoder.layer.0.output.dense"].describe() == (
        "no activation (every use of its output in the forward pass goes on unchanged)"
    )


class _Watched(nn.Module):
    """Nothing here traces (a data-dependent branch); each layer's output meets a different fate."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("q", "gelu", "tanh", "gate", "up", "late", "res", "head"):
            setattr(self, name, nn.Linear(8, 8))
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e30:  # symbolic tracing fails here
            x = x + 0
        q = self.q(x).view(x.shape[0], 2, 4).transpose(0, 1)  # into an attention product
        h = torch.matmul(q, q.transpose(1, 2)).sum() * 0 + x
        h = F.gelu(self.gelu(h))  # a functional activation, directly
        h = torch.tanh(self.drop(self.tanh(h)))  # through dropout: still the layer's own activation
        h = self.up(h) * F.silu(self.gate(h))  # a gated unit: up's output is multiplied, not activated
        h = self.late(h).reshape(-1, 8).relu()  # an activation after a reshape: not attributed
        h = h + self.res(h)  # a residual sum
        return self.head(h).view(-1, 2, 4)  # the model's output, through a view


def test_without_a_graph_the_forward_passs_calls_say_what_follows_each_layer():
    sites = {s.layer: s for s in discover_sites(_Watched().eval(), Batch(_x(d=8)))}
    assert {name: (s.activation, s.found_by) for name, s in sites.items()} == {
        "q": ("none", "called-none"),
        "gelu": ("gelu", "called"),
        "tanh": ("tanh", "called"),
        "gate": ("silu", "called"),
        "up": ("none", "gated"),  # once "unknown": counted on its pre-activation, as if its neurons were its own
        "late": ("unknown", "unknown"),
        "res": ("none", "called-none"),
        "head": ("none", "called-none"),
    }
    assert sites["gelu"].describe() == "gelu: function gelu called on its output in the forward pass"
    assert sites["tanh"].tap == "tanh"  # counted at the layer's own output, the function applied there
    assert sites["up"].module == "gate" and not sites["up"].counted
    assert (
        sites["up"].describe()
        == "no activation: the linear half of a gated unit (its output multiplies gate's activation)"
    )


def test_watching_the_calls_leaves_the_output_and_the_model_as_they_were():
    model = _Watched().eval()
    x = _x(d=8)
    with torch.no_grad():
        before = model(x)
    discover_sites(model, Batch(x))
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(not m._forward_hooks for m in model.modules())
    assert not torch.overrides._get_current_function_mode_stack()


def test_a_called_activation_is_censused_like_a_hook_written_here():
    model = _Watched().eval()
    x = _x(n=64, d=8, seed=3)
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach()))
        for name in ("gelu", "tanh")
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    census = {c.layer: c for c in activation_census(model, x)}
    assert set(census) == {"gelu", "tanh", "gate", "late"}
    assert census["gelu"].fire_rate == pytest.approx((seen["gelu"] > 0).float().mean(0).numpy())
    assert census["gelu"].zero_rate == pytest.approx((F.gelu(seen["gelu"]).abs() < 0.01).float().mean(0).numpy())
    assert census["tanh"].saturation_rate == pytest.approx((seen["tanh"].tanh().abs() > 0.99).float().mean(0).numpy())
    assert census["gelu"].mean_activation == pytest.approx(F.gelu(seen["gelu"]).mean(0).numpy(), abs=1e-6)


@pytest.mark.slow  # importing transformers takes most of it
def test_gpt2_attention_and_block_outputs_have_no_activation_and_c_fc_is_gelu():
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=32)).eval()
    ids = torch.randint(0, 50, (2, 6))
    sites = {s.layer: s for s in discover_sites(model, to_batch({"input_ids": ids}))}
    for k in range(2):
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_proj"):
            assert sites[f"transformer.h.{k}.{part}"].found_by == "called-none"
        assert (sites[f"transformer.h.{k}.mlp.c_fc"].activation, sites[f"transformer.h.{k}.mlp.c_fc"].found_by) == (
            "gelu",
            "convention",
        )
    assert sites["lm_head"].found_by == "output"


@pytest.mark.slow  # importing transformers takes most of it
@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_a_gated_mlps_linear_half_and_rotary_projections_have_no_activation(family):
    # Llama's q_proj and k_proj are rotated (q * cos + rotate_half(q) * sin: products with a table no layer
    # made, and a sign flip) before attention, and up_proj multiplies silu(gate_proj(x)): all three were
    # "unknown", counted on their pre-activation; only gate_proj's neurons are the MLP's own
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=32)  # fmt: skip
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
        kind = "silu"
    else:  # GeGLU (tanh GELU), its own rotary embedding, tied embeddings
        model = transformers.GemmaForCausalLM(transformers.GemmaConfig(**common, head_dim=8)).eval()
        kind = "gelu"
    sites = {s.layer: s for s in discover_sites(model, to_batch({"input_ids": torch.randint(0, 50, (2, 7))}))}
    for k in range(2):
        block = f"model.layers.{k}"
        for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):
            assert (sites[f"{block}.{part}"].activation, sites[f"{block}.{part}"].found_by) == ("none", "called-none")
        assert sites[f"{block}.mlp.gate_proj"].activation == kind
        up = sites[f"{block}.mlp.up_proj"]
        assert (up.activation, up.found_by, up.module, up.counted) == ("none", "gated", f"{block}.mlp.gate_proj", False)
    assert [s.layer for s in sites.values() if s.counted] == [f"model.layers.{k}.mlp.gate_proj" for k in range(2)]


class _Rescaled(nn.Module):
    """A layer's output rescaled by a mask and negated before the residual sum (no activation), and a
    hand-written swish (h * sigmoid(h): a product with its own activation, which is no gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.scaled, self.swish, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e30:  # symbolic tracing fails here
            x = x + 0
        mask = (torch.arange(8) % 2).float()
        h = x + -(self.scaled(x) * mask)
        s = self.swish(h)
        return self.head(s * torch.sigmoid(s))


def test_a_rescaled_output_has_no_activation_and_a_hand_written_swish_stays_unknown():
    sites = {s.layer: s for s in discover_sites(_Rescaled().eval(), Batch(_x(d=8)))}
    assert (sites["scaled"].activation, sites["scaled"].found_by) == ("none", "called-none")
    assert (sites["swish"].activation, sites["swish"].found_by) == ("unknown", "unknown")


def _bert_batch() -> Batch:
    return to_batch(padded_batch([4, 2, 3]))


def test_declared_activations_win_over_what_is_found():
    sites = discover_sites(shared_relu(), Batch(_x()), {"fc1": "tanh", "fc2": "none", "out": "sigmoid"})
    assert [(s.layer, s.activation, s.found_by, s.counted) for s in sites] == [
        ("fc1", "tanh", "declared", True),
        ("fc2", "none", "declared", False),
        ("out", "sigmoid", "declared", True),
    ]


def test_declaring_a_layer_that_does_not_exist_or_an_unknown_kind_is_a_clear_error():
    with pytest.raises(InspectorError, match="'fc9'.*not an nn.Linear.*fc1, fc2, out"):
        discover_sites(shared_relu(), None, {"fc9": "relu"})
    with pytest.raises(InspectorError, match="unknown activation 'swishy' for fc1"):
        discover_sites(shared_relu(), None, {"fc1": "swishy"})


class _CalledTwice(nn.Module):
    """The same fc and ReLU applied twice in one forward pass, and the ReLU once on the raw input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.act(self.fc(self.act(x)))))


def _observe(model: nn.Module, x: torch.Tensor, sites) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    calls = []
    with inspecting(model) as guard, torch.no_grad():
        observer = SiteObserver(
            model, sites, lambda layer, pre, out: calls.append((layer, pre.clone(), out.clone())), guard
        )
        observer.start_batch()
        model(x)
    assert all(not m._forward_hooks for m in model.modules())
    return calls


def test_observer_attributes_each_call_of_a_shared_module_to_its_own_layer():
    model, x = shared_relu(), _x()
    calls = _observe(model, x, discover_sites(model, Batch(x)))
    with torch.no_grad():
        z1 = model.fc1(x)
        z2 = model.fc2(torch.relu(z1))
    assert [layer for layer, _, _ in calls] == ["fc1", "fc2"]
    assert torch.equal(calls[0][1], z1) and torch.equal(calls[0][2], torch.relu(z1))
    assert torch.equal(calls[1][1], z2) and torch.equal(calls[1][2], torch.relu(z2))


def test_observer_reports_every_call_of_a_layer_and_no_call_on_other_tensors():
    torch.manual_seed(0)
    model, x = _CalledTwice(), _x(d=4)
    calls = _observe(model, x, discover_sites(model, Batch(x)))
    with torch.no_grad():
        first = model.fc(torch.relu(x))
        second = model.fc(torch.relu(first))
    # three ReLU calls; the one on the raw input belongs to no layer
    assert [layer for layer, _, _ in calls] == ["fc", "fc"]
    assert torch.equal(calls[0][1], first) and torch.equal(calls[1][1], second)


def test_observer_applies_a_traced_function_at_the_tap():
    model, x = functional_activations(), _x()
    calls = {layer: (pre, out) for layer, pre, out in _observe(model, x, discover_sites(model, Batch(x)))}
    with torch.no_grad():
        h1 = torch.relu(model.fc1(x))
        h2 = torch.nn.functional.gelu(model.fc2(h1))
        pre3 = model.bn(model.fc3(h2))
    assert sorted(calls) == ["fc1", "fc2", "fc3"]
    assert torch.equal(calls["fc2"][1], h2)
    assert torch.equal(calls["fc3"][0], pre3) and torch.equal(calls["fc3"][1], torch.relu(pre3))


class _TwoActivationsOnOneOutput(nn.Module):
    """fc1's output goes to a ReLU (its activation: the first one applied to it) and then also to the
    Tanh that is fc2's activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.fc2 = nn.Linear(5, 3)
        self.relu = nn.ReLU()
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        main = self.tanh(self.fc2(self.relu(h)))
        return main + self.tanh(h).sum(dim=1, keepdim=True)


def test_observer_attributes_a_layer_only_the_calls_of_its_own_activation_module():
    torch.manual_seed(0)
    model, x = _TwoActivationsOnOneOutput(), _x(d=4)
    sites = discover_sites(model, Batch(x))
    assert [(s.layer, s.module) for s in sites] == [("fc1", "relu"), ("fc2", "tanh")]
    calls = _observe(model, x, sites)
    assert [(layer, tuple(out.shape)) for layer, _, out in calls] == [("fc1", (16, 5)), ("fc2", (16, 3))]
    with torch.no_grad():
        assert torch.equal(calls[0][2], torch.relu(model.fc1(x)))

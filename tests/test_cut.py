"""The census ends its forwards after the last site (:mod:`inspector.analysis.cut`): every number is the
same as with whole forwards (compared field by field with the cut turned off), the modules after the
last site run on the first batch only, and where the sites could go on after a module (a head between
two blocks, a module at both ends, a wrapped model) nothing is cut."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import cut as cut_module
from inspector.analysis.activations import activation_census
from inspector.analysis.cut import ForwardCut, candidates
from inspector.analysis.guard import inspecting
from inspector.analysis.inputs import as_source
from inspector.analysis.sites import discover_sites


def _same(a: object, b: object, where: str = "") -> None:
    """``a`` and ``b`` equal in every field, arrays bit for bit (NaN equal to NaN)."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for field in dataclasses.fields(a):
            _same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}[{key}]")
    else:
        assert a == b, where


def _calls(module: nn.Module) -> list[int]:
    """The rows of each forward of ``module`` that ran to the end, appended to as they do."""
    calls: list[int] = []
    module.register_forward_hook(lambda module, args, out: calls.append(int(args[0].shape[0])))
    return calls


def _census_both_ways(model: nn.Module, data, monkeypatch, **kwargs):
    """The census with the cut, the cut's module (``None``: uncut), and the census with whole forwards."""
    cuts: list[str | None] = []
    decide = ForwardCut._decide

    def recorded(self: ForwardCut) -> None:
        decide(self)
        cuts.append(self.at)

    with monkeypatch.context() as patch:
        patch.setattr(ForwardCut, "_decide", recorded)
        with_cut = activation_census(model, data, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(cut_module, "candidates", lambda *args: {})
        patch.setattr(cut_module, "later_candidates", lambda *args: {})
        whole = activation_census(model, data, **kwargs)
    return with_cut, cuts[0] if cuts else None, whole


def test_an_mlp_census_skips_its_output_layer_after_the_first_batch(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    head = _calls(model[4])
    X = torch.randn(200, 6)
    with_cut, at, whole = _census_both_ways(model, (X, torch.randint(0, 3, (200,))), monkeypatch, batch_size=32)
    assert at == "4"
    _same(with_cut, whole)
    # site discovery's forward (on the first batch) and the cut's (on its first two rows); then
    # discovery's and the 7 whole forwards uncut
    assert head == [32, 2] + [32, 32, 32, 32, 32, 32, 32, 8]
    assert [a.layer for a in with_cut] == ["0", "2"]


def test_gpt2_ends_before_the_final_norm_and_lm_head_and_counts_the_same(monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    head = _calls(model.lm_head)
    data = [
        {"input_ids": torch.randint(0, 100, (32, 16)), "attention_mask": torch.ones(32, 16, dtype=torch.long)}
        for _ in range(3)
    ]
    data[2]["attention_mask"][1, 10:] = 0  # a padded batch: the masked counts too
    with_cut, at, whole = _census_both_ways(model, data, monkeypatch, top_k=3)
    assert at == "transformer.ln_f"
    _same(with_cut, whole)
    assert with_cut[0].top_examples is not None and with_cut[0].top_examples.kind == "tokens"
    # site discovery's forward (on the first batch) and the cut's (on its first two rows): no census batch
    # reaches lm_head; then discovery's and the 3 whole forwards uncut
    assert head == [32, 2] + [32, 32, 32, 32]


def test_a_small_head_is_learned_on_the_first_batch_not_on_a_probe(monkeypatch):
    torch.manual_seed(0)
    # the head holds 1.4% of the parameters, less than two rows are of a batch of 32: no probe forward
    model = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    head = _calls(model[4])
    with_cut, at, whole = _census_both_ways(model, torch.randn(96, 6), monkeypatch, batch_size=32)
    assert at == "4"
    _same(with_cut, whole)
    assert head == [32, 32] + [32] * 4  # discovery's and the first batch's; then discovery's and 3 uncut


class _Experts(nn.Module):
    """A mixture: the second expert is used only by rows whose first feature is above 3 (none in the first batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)) for _ in range(2))
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.experts[0](x)
        rare = x[:, 0] > 3
        if bool(rare.any()):
            out = out + torch.zeros_like(out).index_add(0, torch.nonzero(rare)[:, 0], self.experts[1](x[rare]))
        return self.head(self.norm(out))


def test_an_expert_first_used_after_the_first_batch_is_still_counted(monkeypatch):
    torch.manual_seed(0)
    model = _Experts()
    X = torch.randn(96, 4)
    X[40:44, 0] = 5.0  # the second batch routes four rows to the second expert
    with_cut, at, whole = _census_both_ways(model, X, monkeypatch, batch_size=32)
    assert at == "norm"
    _same(with_cut, whole)
    counted = {a.layer: a for a in with_cut}
    assert counted["experts.0.0"].n_positions == 96  # rows the layer saw
    assert counted["experts.1.0"].n_positions == int((X[:, 0] > 3).sum()) >= 4


class _ExpertsLast(nn.Module):
    """A mixture at the end of the model, each expert a Linear, ReLU, LayerNorm: nothing without a site follows
    it at the top, so only a module inside an expert could end a forward. The rare expert is used only from
    the second batch on: expert 1, run after expert 0; or, ``reverse``, expert 0, run after expert 1 (which
    is registered after it)."""

    def __init__(self, reverse: bool = False) -> None:
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8)) for _ in range(2))
        self.common, self.rare = (1, 0) if reverse else (0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.experts[self.common](x)
        rare = x[:, 0] > 3
        if bool(rare.any()):
            routed = self.experts[self.rare](x[rare])
            out = out + torch.zeros_like(out).index_add(0, torch.nonzero(rare)[:, 0], routed)
        return out


@pytest.mark.parametrize("reverse", [False, True], ids=["rare-registered-last", "rare-registered-first"])
def test_an_expert_the_first_forward_did_not_see_keeps_the_forward_whole(reverse, monkeypatch):
    # the first batch, which the cut is learned on, never reaches the rare expert; a later batch's would run
    # after a cut inside the common one (reversed, experts.1.2 is registered after every site and starts
    # after the last site that first forward saw), so none is made
    torch.manual_seed(0)
    model = _ExpertsLast(reverse)
    probe = as_source(torch.randn(4, 4)).first()
    assert "experts.1.2" in cut_module.later_candidates(model, discover_sites(model, probe))
    X = torch.randn(96, 4)
    X[40:44, 0] = 5.0
    assert not bool((X[:32, 0] > 3).any())
    with_cut, at, whole = _census_both_ways(model, X, monkeypatch, batch_size=32)
    assert at is None
    _same(with_cut, whole)
    rare = f"experts.{model.rare}.0"
    assert {a.layer: a.n_positions for a in with_cut}[rare] == int((X[:, 0] > 3).sum()) >= 4


class _HeadBetween(nn.Module):
    """A head called between two blocks, and a module called at both ends: neither may end a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(5)
        self.first = nn.Sequential(nn.Linear(5, 7), nn.ReLU())
        self.head = nn.Linear(7, 7)
        self.second = nn.Sequential(nn.Linear(7, 5), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.second(self.head(self.first(self.norm(x)))))


def test_modules_that_run_before_a_later_site_do_not_cut(monkeypatch):
    torch.manual_seed(0)
    model = _HeadBetween()
    calls = _calls(model.norm)
    with_cut, at, whole = _census_both_ways(model, torch.randn(100, 5), monkeypatch, batch_size=25)
    assert at is None
    _same(with_cut, whole)
    assert len(calls) == 2 * 2 * (1 + 4)  # twice in each forward: site discovery's and 4 batches', both ways


def test_a_wrapped_or_compiled_model_is_never_cut():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sites = tuple(s for s in discover_sites(model, next(iter(as_source(torch.randn(8, 3))))) if s.counted)
    assert set(candidates(model, sites)) == {"2"}  # the output layer (not counted) is after the last site
    wrapped = nn.DataParallel(model)
    assert candidates(wrapped, tuple(s for s in discover_sites(wrapped, None) if s.counted)) == {}


class _CatchesEverything(nn.Module):
    """A model whose head is inside ``try: ... except Exception``: the cut is not an ``Exception``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 6), nn.ReLU())
        self.head = nn.Linear(6, 1)
        self.fallbacks = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        try:
            return self.head(h)
        except Exception:  # noqa: BLE001 - what the test is about
            self.fallbacks += 1
            return h.sum(-1, keepdim=True)


def test_a_model_catching_exceptions_does_not_catch_the_cut():
    torch.manual_seed(0)
    model = _CatchesEverything()
    census = activation_census(model, torch.randn(64, 3), batch_size=16)
    assert model.fallbacks == 0
    assert census[0].n_samples == 64


def test_the_cut_hooks_are_gone_after_the_census():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
    activation_census(model, torch.randn(64, 3), batch_size=16)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    model(torch.randn(2, 3))  # the head runs again after the census
    with inspecting(model) as guard:
        cut = ForwardCut(model, discover_sites(model, None), guard)
        assert cut.at is None  # decided on the first forward, not before


class _FixedBatch(nn.Module):
    """A model that runs only on batches of 16 rows: the cut is learned on the first batch, run whole."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 6), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 16:
            raise ValueError("this model takes batches of 16")
        return self.head(self.body(x))


def test_a_model_that_cannot_run_on_two_rows_is_cut_from_its_second_batch(monkeypatch):
    torch.manual_seed(0)
    model = _FixedBatch()
    head = _calls(model.head)
    with_cut, at, whole = _census_both_ways(model, torch.randn(64, 3), monkeypatch, batch_size=16)
    assert at == "head"
    _same(with_cut, whole)
    assert head == [16, 16] + [16] * 5  # discovery's and the first batch's; then discovery's and 4 uncut

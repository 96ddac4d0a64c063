"""Top-activating examples per neuron (inspector/analysis/top_examples.py), checked against hooks written
here and a numpy recomputation over every activation: the same values, samples, positions and context,
ties broken by global order; bounded state; the faces (API, JSON, save/load, report)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inspector.analysis import AnalysisOptions, analyze
from inspector.analysis.activations import activation_census
from inspector.analysis.top_examples import CONTEXT, TopExamplesStatistic, _above, _first_candidates, selectivity
from inspector.core.batches import Batch
from inspector.errors import InspectorError
from inspector.results import load_result, results_equal, to_json_document
from tests.top_examples_worker import PLANTED_NEURON, PLANTED_TOKEN, TokenMLP, tabular, token_batches

K = 20


def _recorded(module: torch.nn.Module, model: torch.nn.Module, batches: list) -> list[torch.Tensor]:
    """Every output of ``module`` over ``batches``, one ``(n, ..., m)`` tensor per batch (a hook of the test's own)."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            for b in batches:
                model(**{k: v for k, v in b.items() if k != "labels"}) if isinstance(b, dict) else model(b)
    finally:
        handle.remove()
    return seen


def _brute_tokens(model: TokenMLP, batches: list, k: int) -> dict[str, np.ndarray]:
    """Per neuron the k largest outputs over every real position, ties by (sample, position): numpy."""
    outs = _recorded(model.act, model, batches)
    values, samples, positions, contexts = [], [], [], []
    start = 0
    for b, out in zip(batches, outs):
        ids, mask = b["input_ids"].numpy(), b["attention_mask"].numpy().astype(bool)
        shown = np.where(mask, ids, -1)
        padded = np.pad(shown, ((0, 0), (CONTEXT, CONTEXT)), constant_values=-1)
        for s, t in zip(*np.nonzero(mask)):  # row-major: the global order within the batch
            values.append(out[s, t].numpy())
            samples.append(start + s)
            positions.append(t)
            contexts.append(padded[s, t : t + 2 * CONTEXT + 1])
        start += len(ids)
    v = np.stack(values)  # (rows, m), rows in global order
    order = np.argsort(-v, axis=0, kind="stable")[:k].T  # (m, k): stable = first in global order among equals
    return {
        "values": np.take_along_axis(v.T, order, axis=1),
        "samples": np.asarray(samples)[order],
        "positions": np.asarray(positions)[order],
        "context": np.stack(contexts)[order],
    }


def test_a_neuron_planted_on_one_token_has_that_token_in_all_its_top_k():
    batches = token_batches()
    top = activation_census(TokenMLP(), batches, top_k=K)[0].top_examples
    assert top is not None and top.kind == "tokens" and top.values.shape == (6, K)
    firing = top.firing_tokens(PLANTED_NEURON)
    assert (firing == PLANTED_TOKEN).all()
    np.testing.assert_array_equal(top.values[PLANTED_NEURON], np.full(K, 0.5, np.float32))
    # the right place: the input holds the planted token at each example's (sample, position), and the context is
    # the 8 ids either side of it (-1 beyond the sequence or at padding)
    ids = torch.cat([b["input_ids"] for b in batches]).numpy()
    mask = torch.cat([b["attention_mask"] for b in batches]).numpy().astype(bool)
    for e in range(K):
        s, t = top.samples[PLANTED_NEURON, e], top.positions[PLANTED_NEURON, e]
        assert ids[s, t] == PLANTED_TOKEN and mask[s, t]
        want = [ids[s, p] if 0 <= p < ids.shape[1] and mask[s, p] else -1 for p in range(t - CONTEXT, t + CONTEXT + 1)]
        np.testing.assert_array_equal(top.context[PLANTED_NEURON, e], want)
    assert top.summary[PLANTED_NEURON] == f"fires on: #{PLANTED_TOKEN}"
    assert top.selectivity[PLANTED_NEURON] == 1.0


def test_top_k_equals_a_numpy_recomputation_over_every_activation_ties_by_global_order():
    model, batches = TokenMLP(), token_batches()
    want = _brute_tokens(model, batches, K)
    top = activation_census(model, batches, top_k=K)[0].top_examples
    assert top is not None
    np.testing.assert_array_equal(top.values, want["values"])
    np.testing.assert_array_equal(top.samples, want["samples"])
    np.testing.assert_array_equal(top.positions, want["positions"])
    np.testing.assert_array_equal(top.context, want["context"])
    # ties decide much here: the rounded weights give equal activations, and the ReLU many zeros
    assert any(len(np.unique(row)) < K for row in top.values)


def test_tabular_mlp_examples_are_samples_with_their_rows():
    net, X, y = tabular()
    census = activation_census(net, (X, y), batch_size=16, top_k=5)
    for site, top in ((net[1], census[0].top_examples), (net[3], census[1].top_examples)):
        assert top is not None and top.kind == "features" and top.context is None
        out = torch.cat(_recorded(site, net, list(torch.split(X, 16)))).numpy()
        order = np.argsort(-out, axis=0, kind="stable")[:5].T
        np.testing.assert_array_equal(top.samples, order)
        np.testing.assert_array_equal(top.values, np.take_along_axis(out.T, order, axis=1))
        assert (top.positions == -1).all()
        np.testing.assert_array_equal(top.rows, X.numpy()[order])
        assert top.summary[0] == "fires on samples " + ", ".join(str(s) for s in order[0, :3]) + ", ..." or (
            top.summary[0] == "never positive"
        )


def test_selectivity_is_one_minus_the_kth_over_the_top_above_the_mean():
    net, X, y = tabular()
    layer = activation_census(net, (X, y), batch_size=16, top_k=5)[0]
    top = layer.top_examples
    assert top is not None
    high = top.values[:, 0] - layer.mean_activation
    low = top.values[:, -1] - layer.mean_activation
    fires = (high > 0) & (top.values[:, 0] > 0)
    want = np.where(fires, 1 - np.clip(low, 0, None) / np.where(high > 0, high, 1), 0.0)
    np.testing.assert_allclose(top.selectivity, np.clip(want, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(selectivity(top, layer.mean_activation), top.selectivity)


def _state_bytes(stat: TopExamplesStatistic) -> int:
    top = stat.top
    return sum(a.nbytes for a in (top.values, top.keys, top.payload) if a is not None)


@pytest.mark.parametrize("rows", [20_000])
def test_memory_of_the_statistic_does_not_grow_with_the_data(rows):
    """The state after 200k rows is the same size, to the byte, as after 20k rows."""
    sizes = {}
    for n in (rows, 10 * rows):
        g = torch.Generator().manual_seed(0)
        stat = TopExamplesStatistic("fc", k=K)
        for b in range(n // 5000):
            x = torch.randn(5000, 6, generator=g)
            stat.update(Batch(x), b, torch.randn(5000, 32, generator=g))
        running = sum(t.nbytes for t in (stat.values, stat.keys, stat.payload) if t is not None)
        stat.flush()
        sizes[n] = (running, _state_bytes(stat))
    assert sizes[rows] == sizes[10 * rows]
    assert sizes[rows][1] == K * 32 * (8 + 4 * 8 + 6 * 4)  # values float64, 4 keys int64, the row's 6 float32


def test_api_json_and_save_load_round_trip(tmp_path):
    batches = token_batches()
    analysis = analyze(TokenMLP(), batches, options=AnalysisOptions(sections=("activations",), top_k=5))
    examples = analysis.top_examples("fc", PLANTED_NEURON)
    assert len(examples) == 5 and all(e.tokens[e.center] == f"#{PLANTED_TOKEN}" for e in examples)
    assert examples[0].value == 0.5
    with pytest.raises(InspectorError, match="no top examples for layer 'nope'"):
        analysis.top_examples("nope", 0)
    with pytest.raises(InspectorError, match="neurons 0-5"):
        analysis.top_examples("fc", 6)
    analysis.save(tmp_path / "a")
    again = load_result(tmp_path / "a")
    assert results_equal(again, analysis)
    assert again.activations[0].top_examples.summary == analysis.activations[0].top_examples.summary
    doc = json.loads(to_json_document(analysis))
    assert doc["result"]["activations"][0]["top_examples"]["__type__"] == "TopExamples"


def test_top_k_zero_keeps_none_and_a_vocabulary_names_the_tokens():
    batches = token_batches()
    off = analyze(TokenMLP(), batches, options=AnalysisOptions(sections=("activations",), top_k=0))
    assert off.activations[0].top_examples is None
    words = [f"w{i}" for i in range(12)]
    on = analyze(TokenMLP(), batches, options=AnalysisOptions(sections=("activations",), top_k=3), vocabulary=words)
    top = on.layer_top_examples("fc")
    assert top.summary[PLANTED_NEURON] == f"fires on: w{PLANTED_TOKEN}"
    assert on.top_examples("fc", PLANTED_NEURON)[0].tokens[CONTEXT] == f"w{PLANTED_TOKEN}"
    with pytest.raises(InspectorError, match="top_k"):
        AnalysisOptions(top_k=-1)


def _word_analysis():
    words = [f"w{i}" for i in range(12)]
    return analyze(
        TokenMLP(), token_batches(), options=AnalysisOptions(sections=("activations",), top_k=5), vocabulary=words
    )


def test_the_report_shows_the_most_and_least_selective_neurons_and_escapes_token_text():
    from inspector.figures.top_examples import selective_rows
    from inspector.render.html import analysis_sections
    from inspector.render.markdown import to_markdown

    analysis = _word_analysis()
    rows = selective_rows(analysis)
    most = [r["neuron"] for r in rows if r["which"] == "most selective"]
    assert most[0] == PLANTED_NEURON and rows[0]["fires on"] == f"fires on: w{PLANTED_TOKEN}"
    least = [r for r in rows if r["which"] == "least selective"]
    assert all(float(r["selectivity"]) <= float(rows[0]["selectivity"]) for r in least) and least
    section = next(s for s in analysis_sections(analysis) if s.id == "top-examples")
    text = "".join(b for b in section.blocks if isinstance(b, str))
    assert '<span class="firing"' in text and f">w{PLANTED_TOKEN}</span>" in text
    assert f"| fc | most selective | {PLANTED_NEURON} | 1.00 | fires on: w{PLANTED_TOKEN} |" in to_markdown(analysis)
    evil = ["<b>x</b>"] * 12
    hostile = analyze(
        TokenMLP(), token_batches(), options=AnalysisOptions(sections=("activations",), top_k=2), vocabulary=evil
    )
    blocks = next(s for s in analysis_sections(hostile) if s.id == "top-examples").blocks
    assert "<b>x</b>" not in "".join(b for b in blocks if isinstance(b, str))


def test_the_neurons_view_builds_only_the_picked_neurons_examples_with_the_firing_token_marked():
    from dashboards.state import DashboardState
    from dashboards.views import neurons

    state = DashboardState.build(_word_analysis())
    children = neurons.top_examples(state, "fc", PLANTED_NEURON)
    assert children[0].children.startswith(f"fires on: w{PLANTED_TOKEN}")
    lines = children[1:]
    assert len(lines) == 5
    for line in lines:
        firing = [c for c in line.children if getattr(c, "className", None) == "firing-token"]
        assert len(firing) == 1 and firing[0].children == f"w{PLANTED_TOKEN}"
    assert neurons.top_examples(state, "fc", 99)[0].children == "pick a neuron"


def test_a_per_sample_layer_of_a_token_model_keeps_samples():
    """BERT's pooler (one row per sample, tanh): its examples are samples (position -1), as a hook finds them."""
    from tests.models import padded_batches, tiny_bert

    model = tiny_bert(num_labels=3)
    batches = padded_batches(4, 4, 10, num_labels=3)
    census = activation_census(model, batches, top_k=3)
    pooler = next(c for c in census if c.layer == "bert.pooler.dense").top_examples
    assert pooler is not None and pooler.kind == "samples" and pooler.context is None and pooler.rows is None
    out = torch.cat(_recorded(model.bert.pooler.activation, model, batches)).numpy()
    order = np.argsort(-out, axis=0, kind="stable")[:3].T
    np.testing.assert_array_equal(pooler.samples, order)
    np.testing.assert_array_equal(pooler.values, np.take_along_axis(out.T, order, axis=1))
    assert (pooler.positions == -1).all()
    inner = next(c for c in census if c.layer.endswith("layer.0.intermediate.dense")).top_examples
    assert inner is not None and inner.kind == "tokens" and inner.context.shape[1:] == (3, 2 * CONTEXT + 1)


def test_a_topk_payload_travels_with_its_value_through_a_merge():
    from inspector.core.statistic import TopK

    a, b = TopK(2), TopK(2)
    a.add(np.array([[1.0], [3.0]]), np.array([[0], [1]]), payload=np.array([[[10]], [[30]]]))
    b.add(np.array([[3.0], [2.0]]), np.array([[2], [3]]), payload=np.array([[[31]], [[20]]]))
    a.merge_from(b)
    np.testing.assert_array_equal(a.values[:, 0], [3.0, 3.0])  # the tie: key 1 before key 2
    np.testing.assert_array_equal(a.payload[:, 0, 0], [30, 31])


def test_the_cli_takes_top_k():
    from inspector.cli.parser import build_parser

    parser = build_parser()
    assert parser.parse_args(["analyze", "m.pt", "--out", "d"]).top_k == 20
    assert parser.parse_args(["analyze", "m.pt", "--out", "d", "--top-k", "0"]).top_k == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["analyze", "m.pt", "--out", "d", "--top-k", "-1"])


@pytest.mark.parametrize("shape", [(4096, 384), (100, 13), (37, 24), (5, 8)])
def test_candidates_above_the_threshold_are_every_entry_above_it_in_row_order_per_column(shape):
    """The chunk-maximum shortcut finds exactly ``torch.nonzero(flat > threshold)`` (``>=`` when inclusive),
    each column's in row order, with their values: NaN entries, a NaN
    or -inf threshold, whole chunks and a last partial chunk included."""
    g = torch.Generator().manual_seed(0)
    for share in (0.001, 0.05, 0.5):
        flat = torch.randn(*shape, generator=g)
        flat[1, 2] = float("nan")
        flat[3, :] = float("nan")
        flat[0, 0] = float("inf")
        threshold = torch.quantile(torch.nan_to_num(flat), 1 - share, dim=0)
        threshold[0], threshold[-1] = float("-inf"), float("nan")
        rows, columns, values = _above(flat, threshold)
        # each column's entries in row order (the columns interleaved): column-major after a stable sort
        by_column = torch.sort(columns, stable=True).indices
        want = torch.nonzero((flat > threshold).T).flip(1)  # column-major (row, column) pairs
        assert torch.equal(rows[by_column], want[:, 0]) and torch.equal(columns[by_column], want[:, 1])
        assert torch.equal(values, flat[rows, columns])
        rows, columns, values = _above(flat, threshold, inclusive=True)
        want = torch.nonzero((flat >= threshold).T).flip(1)
        by_column = torch.sort(columns, stable=True).indices
        assert torch.equal(rows[by_column], want[:, 0]) and torch.equal(columns[by_column], want[:, 1])


def test_a_large_first_batch_cut_by_its_chunk_maxima_gives_the_exact_top_ties_nan_and_infinity_included():
    """A first batch of thousands of rows is cut to the entries at or above each column's k-th largest chunk
    maximum (no full top-k of the batch): the same top as numpy's stable sort over every row, with many
    ties (values rounded to 0.1), columns without ties, a column of one repeated value, an -inf column and NaN rows."""
    g = torch.Generator().manual_seed(3)
    n, m = 4096 + 7, 9
    batches = []
    for _ in range(3):
        out = (torch.randn(n, m, generator=g) * 10).round() / 10
        out[:, 5:] = torch.randn(n, m - 5, generator=g)  # no ties: the k-th value decides alone
        out[:, 1] = 0.25  # every row ties
        out[:, 2] = float("-inf")
        out[100:105, 3] = float("inf")
        out[n - 3 :, 4] = float("nan")  # NaN in the last rows, past the whole chunks
        batches.append(out)
    # the shortcut is taken on such a batch: its candidates are few, and a superset of each column's top k
    assert _first_candidates(batches[0], K) is not None
    found = _first_candidates(batches[0][:, [0, 3, 5, 6]].contiguous(), K)
    assert found is not None and found[0].numel() < 3 * K * 4
    for count in (1, 3):  # the first batch alone, then with two more merged in
        stat = TopExamplesStatistic("fc", K)
        for index, out in enumerate(batches[:count]):
            stat.update(Batch(torch.zeros(n, 2)), index, out)
        stat.flush()
        top = stat.finish({i: i * n for i in range(count)})
        assert top is not None
        v = torch.cat(batches[:count]).numpy()
        finite = np.where(np.isnan(v) | np.isneginf(v), -np.inf, v)
        order = np.argsort(-finite, axis=0, kind="stable")[:K].T  # ties: the first row in global order
        want = np.take_along_axis(v.T, order, axis=1)
        known = np.isfinite(want) | (want == np.inf)
        np.testing.assert_array_equal(top.values[known], want[known])
        np.testing.assert_array_equal(top.samples[known], order[known])
        assert np.isnan(top.values[2]).all() and (top.samples[2] == -1).all()  # -inf never enters
        np.testing.assert_array_equal(top.samples[1], np.arange(K))  # all tied: the first rows


@pytest.mark.parametrize("seed", range(6))
def test_many_small_batches_with_ties_keep_the_exact_top_and_each_example_its_own_row(seed):
    """Examples enter, are outranked and leave over many batches (some smaller than k, some neurons seeing
    fewer than k rows that are numbers): the kept values, samples and rows equal numpy's stable sort over
    every row, each example's row the one it came from."""
    g = torch.Generator().manual_seed(seed)
    k, m, d = 5, 7, 3
    sizes = [int(s) for s in torch.randint(1, 9, (14,), generator=g)]
    stat = TopExamplesStatistic("fc", k)
    outs, rows = [], []
    for index, n in enumerate(sizes):
        out = torch.randint(-3, 4, (n, m), generator=g).float()  # few distinct values: ties everywhere
        out[:, 6] = float("-inf")  # never enters
        out[: max(0, n - 1), 5] = float("nan")  # only each batch's last row is a number
        x = torch.randn(n, d, generator=g)
        stat.update(Batch(x), index, out)
        outs.append(out)
        rows.append(x)
    stat.flush()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    top = stat.finish(dict(enumerate(starts.tolist())))
    assert top is not None and top.kind == "features"
    v = torch.cat(outs).numpy()
    x = torch.cat(rows).numpy()
    finite = np.where(np.isnan(v) | np.isneginf(v), -np.inf, v)
    order = np.argsort(-finite, axis=0, kind="stable")[:k].T  # (m, k)
    want = np.take_along_axis(finite.T, order, axis=1)
    known = np.isfinite(want)
    np.testing.assert_array_equal(top.values[known], want[known])
    np.testing.assert_array_equal(top.samples[known], order[known])
    np.testing.assert_array_equal(top.rows[known], x[order[known]])
    assert (top.samples[~known] == -1).all() and np.isnan(top.values[~known]).all()
    assert known[5].sum() == min(k, len(sizes)) and not known[6].any()


def test_the_census_hands_the_top_examples_the_chunk_maxima_of_the_output_it_counted():
    """The census computes the top examples' chunk maxima block by block (while a block is in the cache):
    the same as computed from the whole output, for row counts that end mid-block and mid-chunk."""
    from inspector.analysis.activations import SiteCensus
    from inspector.analysis.sites import Site
    from inspector.analysis.top_examples import chunk_maxima

    site = Site(layer="fc", in_features=3, out_features=7, activation="relu", found_by="module", module="a", tap="fc")
    g = torch.Generator().manual_seed(0)
    for rows in (5, 16, 300, 1000, 4096 + 24):
        census = SiteCensus(site, keep_samples=0)
        out = torch.randn(rows, 7, generator=g)
        out[3, 2] = float("nan")
        census.update(Batch(torch.zeros(rows, 3)), 0, out, out.relu(), peaks=True)
        if rows < 16:
            assert census.peaks is None
        else:
            np.testing.assert_array_equal(census.peaks.numpy(), chunk_maxima(out.relu()).numpy())
        census.update(Batch(torch.zeros(rows, 3)), 1, out, out.relu())
        assert census.peaks is None  # not asked for


@pytest.mark.parametrize("order", ["long first", "short first", "short only"])
def test_a_batch_of_one_token_texts_keeps_token_examples(order):
    """GPT-2 adds no start token, so a one-word text is a (1, 1) batch and its MLP output (1, 1, m): still
    a token's row, with its position and context, beside the other batches' (it was read as a sample,
    with no context, and the merge then failed on the mismatched payloads). Against hooks of the test's own:
    every neuron's top 2 over every position, in global order."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    long, short = torch.tensor([[3, 4, 5]]), torch.tensor([[6]])
    texts = {"long first": [long, short], "short first": [short, long], "short only": [short]}[order]
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids} for ids in texts]
    analysis = analyze(model, batches, task="causal-lm", options=AnalysisOptions(sections=("activations",), top_k=2))
    census = {c.layer: c for c in analysis.activations}
    top = census["transformer.h.0.mlp.c_fc"].top_examples
    assert top is not None and top.kind == "tokens" and top.context.shape[2] == 2 * CONTEXT + 1
    outs = _recorded(model.transformer.h[0].mlp.act, model, batches)
    values = np.concatenate([o[0].numpy() for o in outs])  # (rows, m) in global order
    ids = np.concatenate([b["input_ids"][0].numpy() for b in batches])
    samples = np.concatenate([np.full(b["input_ids"].shape[1], i) for i, b in enumerate(batches)])
    positions = np.concatenate([np.arange(b["input_ids"].shape[1]) for b in batches])
    best = np.argsort(-values, axis=0, kind="stable")[: top.values.shape[1]].T  # (m, j)
    np.testing.assert_allclose(top.values, np.take_along_axis(values.T, best, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(top.samples, samples[best])
    np.testing.assert_array_equal(top.positions, positions[best])
    np.testing.assert_array_equal(top.context[:, :, CONTEXT], ids[best])

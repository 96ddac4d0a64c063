"""What each neuron fires on: its top-``k`` activating examples, streamed in the census's pass.

For every counted site, :class:`TopExamplesStatistic` keeps per neuron the ``k`` rows (a token
position, or a sample) with the largest activation (the site's output, what the census counts),
ties broken by global order (global batch index, call within the batch, sample, position: the order
one process reads the data in). Memory is ``k x neurons x context`` whatever the data size: each
batch costs one ``torch.topk`` over its ``(rows, m)`` output on the device and a merge with the
running ``(k, m)`` top, never the activations themselves. Across ranks the
:class:`~inspector.core.statistic.TopK` state (values, order keys and a payload) is merged exactly:
the top ``k`` of the union.

What an example is depends on the input:

* token ids ``(n, T)`` and a per-position output ``(n, T, m)``: the token at ``(sample, position)``
  with :data:`CONTEXT` tokens either side (ids; ``-1`` beyond the sequence or at padding), decoded
  with the analysis's tokenizer or vocabulary when it has one;
* feature rows ``(n, d)``: the sample, with its row when ``d <= MAX_ROW_FEATURES``;
* anything else (images, a per-sample output of a token model): the sample.

**Selectivity** (in ``[0, 1]``, per neuron), to pick the most and least selective neurons of a layer:
for tokens, the share of the top ``k`` examples whose firing token is the neuron's most frequent
one (1: it fires on one token only; ``1/k``: on ``k`` different tokens); for other inputs,
``1 - (v_k - mean) / (v_1 - mean)`` with ``v_1 >= v_k`` the largest and ``k``-th largest activation
and ``mean`` the neuron's mean activation (0: the top ``k`` are equally strong; near 1: one
example stands far above the others). A neuron whose top activation is not above its mean, or not
positive ("never positive"), has selectivity 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from inspector.core import kernels
from inspector.core.batches import Batch
from inspector.core.statistic import Rows, Statistic, TopK
from inspector.errors import InspectorError
from inspector.results import result

DEFAULT_K = 20
CONTEXT = 8  # tokens either side of the firing token
MAX_ROW_FEATURES = 256  # a tabular example keeps its row up to this many features
SUMMARY_ITEMS = 3

if TYPE_CHECKING:  # the census holds this module's results: imported for the annotations only
    from inspector.analysis.activations import LayerActivations


@dataclass(frozen=True)
class TopExample:
    """One of a neuron's top examples: its ``value`` (activation), global ``sample`` index,
    ``position`` (the token's, ``-1`` when the example is the whole sample), ``tokens`` (the context's
    text, the firing token at ``center``; empty for other inputs) and ``row`` (a tabular sample's
    features, or ``None``)."""

    value: float
    sample: int
    position: int
    tokens: tuple[str, ...] = ()
    center: int = CONTEXT
    row: np.ndarray | None = None


@result
class TopExamples:
    """The top-``k`` activating examples of each neuron of layer ``layer``.

    ``values`` ``(m, j)`` float32, each neuron's activations in descending order (``j = min(k, rows)``);
    ``samples`` ``(m, j)`` int64 global sample indices; ``positions`` ``(m, j)`` int64 the token position
    (``-1``: the example is the sample). ``context`` ``(m, j, 2 * CONTEXT + 1)`` int32 token ids
    around each example (``-1`` outside the sequence), token inputs only; ``rows`` ``(m, j, d)`` float32
    the samples' features, tabular inputs only. ``token_ids`` ``(u,)`` int64 sorted, the distinct ids in
    ``context``, and ``token_text`` their text (``#<id>`` without a tokenizer). ``summary``: one line per
    neuron; ``selectivity`` ``(m,)`` in ``[0, 1]`` (see :mod:`inspector.analysis.top_examples`).
    """

    layer: str
    k: int
    kind: str  # "tokens", "features" or "samples"
    values: np.ndarray
    samples: np.ndarray
    positions: np.ndarray
    context: np.ndarray | None
    rows: np.ndarray | None
    token_ids: np.ndarray
    token_text: tuple[str, ...]
    summary: tuple[str, ...]
    selectivity: np.ndarray

    @property
    def width(self) -> int:
        return int(self.values.shape[0])

    def text_of(self, ids: np.ndarray) -> tuple[str, ...]:
        """The text of each token id (``""`` for ``-1``, ``#<id>`` when unknown)."""
        known = self.token_ids
        where = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
        return tuple(
            "" if i < 0 else (self.token_text[where[t]] if len(known) and known[where[t]] == i else f"#{int(i)}")
            for t, i in enumerate(np.asarray(ids, dtype=np.int64).reshape(-1))
        )

    def firing_tokens(self, neuron: int) -> np.ndarray:
        """The id of the firing token of each of ``neuron``'s examples ``(j,)`` (token inputs)."""
        if self.context is None:
            raise ValueError(f"layer {self.layer}: its examples are samples, not tokens")
        return np.asarray(self.context[neuron, :, CONTEXT], dtype=np.int64)

    def examples(self, neuron: int) -> tuple[TopExample, ...]:
        """``neuron``'s top examples, the strongest first."""
        if not 0 <= neuron < self.width:
            raise InspectorError(f"layer {self.layer} has neurons 0-{self.width - 1}, not {neuron}")
        out = []
        for e in range(self.values.shape[1]):
            tokens = self.text_of(self.context[neuron, e]) if self.context is not None else ()
            out.append(
                TopExample(
                    float(self.values[neuron, e]),
                    int(self.samples[neuron, e]),
                    int(self.positions[neuron, e]),
                    tokens,
                    CONTEXT,
                    self.rows[neuron, e] if self.rows is not None else None,
                )
            )
        return tuple(out)

    def most_selective(self, n: int = 5) -> np.ndarray:
        """The ``n`` neurons of highest selectivity (ties: the lower index first)."""
        return np.argsort(-self.selectivity, kind="stable")[:n]

    def least_selective(self, n: int = 5) -> np.ndarray:
        """The ``n`` neurons of lowest selectivity (ties: the lower index first)."""
        return np.argsort(self.selectivity, kind="stable")[:n]


class BatchSizes(Statistic):
    """How many samples each global batch holds (``sizes``, a "cat" state keyed by batch index): what
    turns an example's (batch, sample in batch) into its global sample index on any number of ranks."""

    sizes: Rows

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sizes", reduction="cat")

    def update(self, batch_index: int, n: int) -> None:
        self.sizes.add(np.array([[batch_index, n]], dtype=np.int64), key=(batch_index,))

    def finish(self) -> dict[int, int]:
        """``{global batch index: first global sample index}``."""
        table = np.concatenate(self.sizes.values()) if self.sizes.count else np.zeros((0, 2), np.int64)
        starts = np.concatenate([[0], np.cumsum(table[:, 1])[:-1]]) if len(table) else np.zeros(0, np.int64)
        return {int(b): int(s) for b, s in zip(table[:, 0], starts)}


class TopExamplesStatistic(Statistic):
    """One site's top-``k`` examples per neuron over a pass (see the module docstring).

    ``update`` per application of the site's activation keeps a running ``(k, m)`` top on the
    device; :meth:`flush` moves it into the ``top`` state (a :class:`~inspector.core.statistic.TopK`
    with keys ``(batch, call, sample, position)`` and the examples' payload) before the merge across
    ranks; :meth:`finish` makes the :class:`TopExamples`.
    """

    top: TopK
    kind_code: int

    def __init__(self, layer: str, k: int = DEFAULT_K) -> None:
        super().__init__()
        self.layer = layer
        self.k = k
        self.add_state("top", reduction="topk", limit=k)
        self.kind: str | None = None
        # the kind as a merged state (1 + its index in KINDS, 0: no row seen), so that a rank that read no
        # batch finishes with the kind of the ranks that did
        self.add_state("kind_code", default=0, reduction="max")
        # the running top on the device. Ranked per neuron: ``values`` (m, k) float32, descending, ties by
        # global order, -inf where no example is yet; ``slot`` (m, k): where rank r's example is stored (each
        # neuron's ranking contiguous: an insertion touches one or two cache lines, not k).
        # Stored, never moved once written: ``keys`` (k, m, 4) int64 and ``payload`` (k, m, P) by (slot,
        # neuron), so a merge writes only the examples that enter (not every kept one it outranks)
        self.values: torch.Tensor | None = None
        self.slot: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.payload: torch.Tensor | None = None
        self.last_batch = -1
        self.calls = 0
        # candidates found since the last merge, in global order: (values, columns, keys, payload) per call
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.pending_count = 0
        self._entered: torch.Tensor | None = None  # the compiled loop's (k, m) record of the rows that entered

    def update(self, batch: Batch, batch_index: int, out: torch.Tensor, peaks: torch.Tensor | None = None) -> None:
        """Add one application: ``out`` ``(n, ..., m)``, the site's output on ``batch`` (global index ``batch_index``);
        ``peaks``: :func:`chunk_maxima` of its float32 rows ``(rows, m)``, when the caller computed them.

        Only the rows that beat a neuron's running ``k``-th value are candidates (one comparison over
        ``out``; after the first batches, few rows). They wait until they are as many as the running top
        holds (``k x m``), then they and the running top are merged by one stable sort: a merge costs about
        the same for a few candidates as for ``k x m``, and a candidate that a fresher ``k``-th value would
        have turned away changes nothing (it does not enter). The first batch is cut to its own top ``k``
        (its candidates by chunk maxima, else ``torch.topk``) and merged at once."""
        if batch_index != self.last_batch:
            self.last_batch, self.calls = batch_index, 0
        else:
            self.calls += 1
        width = out.shape[-1]
        n = len(batch)
        flat = out.detach().reshape(-1, width)
        total = flat.shape[0]
        per_sample = total // n if n and total % n == 0 else 0
        if total == 0 or per_sample == 0:
            return
        if flat.dtype != torch.float32:
            flat = flat.float()
        positions = batch.position_mask(out.shape)
        real = positions.reshape(-1) if positions is not None else None
        if real is not None and bool(real.all()):  # no padding in this batch: no row to leave out
            real = None
        # a row per token position: several rows a sample, or a per-position output (n, T, m) of T = 1 (a
        # batch of one-token texts), which is as much a token's as the (n, m) of a pooled layer is not
        positional = per_sample > 1 or (out.dim() >= 3 and tuple(out.shape[:2]) == tuple(batch.inputs.shape[:2]))
        if self.kind is None:
            self.kind = _kind(batch.inputs, per_sample, positional)
            self.kind_code = KINDS.index(self.kind) + 1
        # a token layer's examples are always tokens (a flattened (n * T, m) output of T = 1: position 0)
        positional = positional or self.kind == "tokens"
        if self.values is not None and self.values.shape[0] != width:
            raise ValueError(f"layer {self.layer}: {width} neurons on one call, {self.values.shape[0]} on another")
        if peaks is not None and peaks.shape[0] == total // ABOVE_CHUNK and kernels.usable(flat, peaks):
            if self._enter_compiled(batch, batch_index, flat, real, peaks, per_sample, positional):
                return
        found = None
        if self.values is None and real is None:
            found = _first_candidates(flat, self.k, peaks)  # None: the batch's exact top below
        if found is not None:
            rows, columns, values = found
            finite = values > float("-inf")  # -inf never enters (as below)
            rows, columns, values = rows[finite], columns[finite], values[finite]
        elif self.values is None:
            real_rows = torch.nonzero(real).reshape(-1) if real is not None else None
            candidates = flat[real_rows] if real_rows is not None else flat
            if candidates.shape[0] == 0:
                return
            values, index = _exact_top(candidates, self.k)  # (j, m), per neuron descending, ties by row
            rows = real_rows[index] if real_rows is not None else index
            columns = torch.arange(width, device=flat.device).expand_as(rows)
            rows, columns, values = rows.reshape(-1), columns.reshape(-1), values.reshape(-1)
            finite = values > float("-inf")  # NaN (mapped to -inf) never enters
            rows, columns, values = rows[finite], columns[finite], values[finite]
        else:
            # what a new row must beat: each neuron's k-th value (-inf while it has fewer); by row within a neuron
            rows, columns, values = _above(flat, self.values[:, self.k - 1], peaks=peaks)
            if real is not None:
                keep = real[rows]
                rows, columns, values = rows[keep], columns[keep], values[keep]
        if values.numel() == 0:
            return
        keys, payload = self._examples(batch, batch_index, rows, per_sample, positional)
        if self.values is None:  # the first candidates: merged now, to give the next calls their threshold
            self._merge(values, columns, keys, payload, width)
            return
        self.pending.append((values, columns, keys, payload))
        self.pending_count += int(values.numel())
        if self.pending_count >= self.k * width:
            self._merge_pending()

    def _examples(
        self, batch: Batch, batch_index: int, rows: torch.Tensor, per_sample: int, positional: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys ``(E, 4)`` (batch, call, sample, position; -1: the example is the sample) and the
        payload ``(E, P)`` of the rows ``rows`` ``(E,)`` of this call's flattened output."""
        sample, position = rows // per_sample, rows % per_sample
        keys = torch.stack(
            [
                torch.full_like(rows, batch_index),
                torch.full_like(rows, self.calls),
                sample,
                position if positional else torch.full_like(rows, -1),
            ],
            dim=-1,
        )
        return keys, _payload(self.kind or "samples", batch, sample, position if positional else None)

    def _enter_compiled(
        self,
        batch: Batch,
        batch_index: int,
        flat: torch.Tensor,
        real: torch.Tensor | None,
        peaks: torch.Tensor,
        per_sample: int,
        positional: bool,
    ) -> bool:
        """:meth:`update` by the compiled loop (:func:`inspector.core.kernels.top_update`): the rows enter
        the running top one by one in row order, then the keys and payload of those that entered are
        written into their slots. The same top as the merge (its ties by global order included).
        ``False`` (nothing entered) when the loop cannot run: then the merge."""
        width = flat.shape[1]
        self._merge_pending()  # candidates an earlier call left for the merge go first (global order)
        if self.values is None:
            empty = torch.zeros(0, dtype=torch.int64)
            self._allocate(width, self._examples(batch, batch_index, empty, per_sample, positional)[1])
        assert self.values is not None and self.slot is not None and self.keys is not None and self.payload is not None
        if self._entered is None or self._entered.shape != (self.k, width):
            self._entered = torch.empty((self.k, width), dtype=torch.int64)
        entered = self._entered
        if not kernels.top_update(flat, real, peaks, self.values, self.slot, entered, ABOVE_CHUNK):
            return False
        where = _flat_nonzero(entered >= 0)
        if where.numel():
            slots, neurons = where // width, where % width
            keys, payload = self._examples(
                batch, batch_index, entered.view(-1).index_select(0, where), per_sample, positional
            )
            self.keys.index_put_((slots, neurons), keys)
            self.payload.index_put_((slots, neurons), payload)
        return True

    def _allocate(self, width: int, payload: torch.Tensor) -> None:
        """The empty running top of ``width`` neurons (every slot free) on ``payload``'s device, with room for
        its payload's ``(E, P)`` rows."""
        k, device = self.k, payload.device
        self.values = torch.full((width, k), float("-inf"), device=device)
        self.slot = torch.arange(k, device=device)[None, :].expand(width, k).contiguous()
        self.keys = torch.zeros((k, width, 4), dtype=torch.int64, device=device)
        self.payload = torch.zeros((k, width, payload.shape[1]), dtype=payload.dtype, device=device)

    def _merge_pending(self) -> None:
        """Merge the candidates waiting since the last merge (in the order they came: global order)."""
        if not self.pending:
            return
        values, columns, keys, payload = (torch.cat(part) for part in zip(*self.pending))
        self.pending, self.pending_count = [], 0
        assert self.values is not None
        self._merge(values, columns, keys, payload, self.values.shape[0])

    def _merge(
        self, values: torch.Tensor, columns: torch.Tensor, keys: torch.Tensor, payload: torch.Tensor, width: int
    ) -> None:
        """The running top with the candidates ``values`` ``(E,)`` (E >= 1) of neurons ``columns`` ``(E,)``
        (rows since the last merge, in global order), their ``keys`` ``(E, 4)`` and ``payload`` ``(E, P)``."""
        k, device = self.k, values.device
        if self.values is None:  # the first candidates: an empty top, every slot free
            self._allocate(width, payload)
        assert self.values is not None and self.slot is not None
        assert self.keys is not None and self.payload is not None
        # only the neurons with candidates (after the first batches, a few) are merged
        touched = _flat_nonzero(torch.bincount(columns, minlength=width) > 0)  # ascending
        t = int(touched.numel())
        every = t == width
        held_values, held_slot = self.values, self.slot
        if not every:
            columns = torch.searchsorted(touched, columns)
            held_values, held_slot = held_values.index_select(0, touched), held_slot.index_select(0, touched)
        # the k ranked entries of each neuron first (-inf where empty; each is before this batch in global
        # order, so it wins a tie), neuron by neuron, then the candidates: one stable sort by (neuron, value
        # descending) ranks them all; each neuron has k entries or more, its first k are the new top
        held_columns = torch.arange(t, device=device).repeat_interleave(k)
        every_value = torch.cat([held_values.reshape(-1), values])
        every_column = torch.cat([held_columns, columns])
        order = torch.sort(_neuron_value_key(every_column, every_value), stable=True).indices
        counts = torch.bincount(every_column, minlength=t)
        starts = torch.cumsum(counts, 0) - counts
        ranked = order.index_select(0, (starts[:, None] + torch.arange(k, device=device)).reshape(-1)).view(t, k)
        new_values = every_value.index_select(0, ranked.reshape(-1)).view(t, k)
        held = ranked < k * t  # (t, k): the rank holds an entry kept from before
        # a kept entry keeps its storage slot; an entering candidate takes one its neuron freed (as many
        # are freed as enter): the i-th entering candidate of a neuron the i-th free slot of that neuron
        kept = _flat_nonzero(held)  # (t * k) positions of kept entries, by neuron then rank
        new_slot = torch.zeros(t * k, dtype=torch.int64, device=device)
        new_slot.index_copy_(0, kept, held_slot.reshape(-1).index_select(0, ranked.view(-1).index_select(0, kept)))
        new_slot = new_slot.view(t, k)
        entering = _flat_nonzero(~held)  # (t * k) positions of entering candidates, by neuron then rank
        if entering.numel():
            used = torch.zeros(t * k, dtype=torch.bool, device=device)
            used.index_fill_(0, (kept // k) * k + new_slot.view(-1).index_select(0, kept), True)
            free = _flat_nonzero(~used)  # (neuron, slot) positions, by neuron then slot: as many as enter
            slots = free % k
            new_slot.view(-1).index_copy_(0, entering, slots)
            candidate = ranked.view(-1).index_select(0, entering) - k * t
            neuron = touched.index_select(0, entering // k) if not every else entering // k
            self.keys.index_put_((slots, neuron), keys.index_select(0, candidate))
            self.payload.index_put_((slots, neuron), payload.index_select(0, candidate))
        if every:
            self.values, self.slot = new_values.contiguous(), new_slot.contiguous()
        else:
            self.values.index_copy_(0, touched, new_values)
            self.slot.index_copy_(0, touched, new_slot)

    def flush(self) -> None:
        """Move the running top into the ``top`` state (before a merge or finish); an empty slot (a neuron
        with fewer than ``k`` rows that are numbers) goes as NaN, which never displaces a number."""
        self._merge_pending()
        if self.values is None or self.slot is None or self.keys is None or self.payload is None:
            return
        ranked, ranked_slot = self.values.T, self.slot.T  # (k, m): rank by rank, as the TopK state holds them
        valid = ranked > float("-inf")
        j = int(valid.sum(0).max())
        values = torch.where(valid, ranked, torch.full_like(ranked, float("nan")))[:j]
        slot = ranked_slot[:j]
        keys = torch.take_along_dim(self.keys, slot[:, :, None], dim=0)
        keys = torch.where(valid[:j, :, None], keys, torch.full_like(keys, torch.iinfo(torch.int64).max))
        payload = torch.take_along_dim(self.payload, slot[:, :, None], dim=0)
        payload = torch.where(valid[:j, :, None], payload, torch.zeros_like(payload))
        self.top.add(values.double().cpu().numpy(), keys.cpu().numpy(), payload.cpu(), ordered=True)
        self.values = self.slot = self.keys = self.payload = None

    def finish(
        self,
        starts: dict[int, int] | None = None,
        census: Any = None,
        token_text: Callable[[Sequence[int]], tuple[str, ...]] | None = None,
    ) -> TopExamples | None:
        """The :class:`TopExamples` (``None`` when the site saw no row); ``starts``: each global batch's
        first sample (:class:`BatchSizes`); ``census``: the site's :class:`LayerActivations` (its mean, for selectivity);
        ``token_text``: ids to text (the tokens adapter's ``token_text``)."""
        top = self.top
        if top.values is None or top.keys is None or top.payload is None:
            return None
        kind = self.kind or (KINDS[self.kind_code - 1] if self.kind_code else "samples")
        values = top.values.T.astype(np.float32)  # (m, j)
        keys = top.keys.transpose(1, 0, 2)  # (m, j, 4)
        first = _batch_starts(starts or {}, keys[..., 0])
        empty = np.isnan(values)  # a slot no row filled (fewer than k rows that are numbers)
        samples = np.where(empty, -1, first + keys[..., 2]).astype(np.int64)
        positions = np.where(empty, -1, keys[..., 3]).astype(np.int64)
        payload = top.payload.transpose(1, 0, 2)
        context = payload.astype(np.int32) if kind == "tokens" else None
        rows = payload.astype(np.float32) if kind == "features" and payload.shape[2] else None
        token_ids = _distinct_ids(context) if context is not None else np.zeros(0, np.int64)
        text = (token_text or _numbered)(token_ids.tolist())
        result_ = TopExamples(
            layer=self.layer,
            k=self.k,
            kind=kind,
            values=values,
            samples=samples,
            positions=positions,
            context=context,
            rows=rows,
            token_ids=token_ids,
            token_text=tuple(text),
            summary=(),
            selectivity=np.zeros(values.shape[0]),
        )
        mean = census.mean_activation if census is not None else None
        counted = _frequencies(context[:, :, CONTEXT]) if context is not None and values.shape[1] else None
        return replace(result_, summary=summaries(result_, counted), selectivity=selectivity(result_, mean, counted))


_NUMBERED: list[str] = []  # "#<id>" at index id, made once (every layer names mostly the same ids)


def _numbered(ids: Sequence[int]) -> tuple[str, ...]:
    ids = [int(i) for i in ids]
    top = max(ids, default=-1)
    if top >= 1_000_000 or min(ids, default=0) < 0:  # not a vocabulary's ids: made here
        return tuple(f"#{i}" for i in ids)
    if top >= len(_NUMBERED):
        _NUMBERED.extend(f"#{i}" for i in range(len(_NUMBERED), top + 1))
    return tuple(map(_NUMBERED.__getitem__, ids))


def _distinct_ids(context: np.ndarray) -> np.ndarray:
    """The distinct ids ``>= 0`` in ``context``, sorted, int64 (``np.unique``; by counting when the ids are
    a vocabulary's, small beside the number of entries)."""
    ids = context[context >= 0].astype(np.int64)
    if ids.size and int(ids.max()) < 4 * ids.size + 1024:
        return np.flatnonzero(np.bincount(ids)).astype(np.int64)
    return np.unique(ids)


def _neuron_value_key(columns: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """An int64 key ``(E,)`` that sorts ascending by neuron ``columns`` ``(E,)``, then by float32 ``values``
    ``(E,)`` descending (equal values, -0.0 and 0.0 included, get equal keys; no NaN)."""
    bits = values.float().contiguous().view(torch.int32).to(torch.int64)
    ascending = torch.where(bits >= 0, bits, -(2**31) - bits)  # the float order as integers
    return columns.to(torch.int64) * 2**33 + (2**31 - ascending)


ABOVE_CHUNK = 16  # rows per chunk whose per-column maximum is compared first (see _above)
FIRST_CANDIDATES = 4  # the first batch's shortcut gives up above this many candidate chunks per kept slot


def _above(
    flat: torch.Tensor,
    threshold: torch.Tensor,
    inclusive: bool = False,
    limit: int | None = None,
    peaks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The entries of ``flat`` ``(rows, m)`` above their column's ``threshold`` ``(m,)`` (at or above it when
    ``inclusive``): their rows, columns and values ``(E,)``, each column's in row order (the columns
    interleaved: chunk by chunk). The same entries as ``torch.nonzero(flat > threshold)``.

    Few entries are above (after the first batches): the maximum of each column over each chunk of
    :data:`ABOVE_CHUNK` rows is compared first (one reduction over ``flat``, cheaper than a comparison
    that writes a mask as large as ``flat``), and only the chunks whose maximum is above (or NaN) are
    looked at entry by entry. ``limit``: raise :class:`_TooMany` when more chunks than that are.
    ``peaks``: :func:`chunk_maxima` of ``flat`` when the caller has them (the census computes them
    while each block of rows is in the cache for its own counts)."""
    compare = torch.ge if inclusive else torch.gt
    rows, width = flat.shape
    whole = rows - rows % ABOVE_CHUNK
    if whole == 0 or not flat.is_contiguous():
        found = torch.nonzero(compare(flat, threshold))
        return found[:, 0], found[:, 1], flat[found[:, 0], found[:, 1]]
    # (chunks, m); NaN where the chunk holds a NaN (then looked at entry by entry)
    peak = peaks if peaks is not None else chunk_maxima(flat)
    # not (peak below the threshold): true where it is above, and where either is NaN
    where = _flat_nonzero(~(peak < threshold if inclusive else peak <= threshold))
    if limit is not None and where.numel() > limit:
        raise _TooMany
    chunk, column = where // width, where % width
    # each pair's entries in ``flat.view(-1)``: its chunk's first row at its column, then a row further each;
    # one index per entry (pairs x ABOVE_CHUNK), the rest per pair or per entry found
    first = chunk * (ABOVE_CHUNK * width) + column
    steps = torch.arange(0, ABOVE_CHUNK * width, width, device=flat.device)
    values = flat.view(-1).index_select(0, (first[:, None] + steps).view(-1)).view(-1, ABOVE_CHUNK)
    entry = _flat_nonzero(compare(values, threshold.index_select(0, column)[:, None]))  # by pair, then row
    pair = entry // ABOVE_CHUNK
    found_rows = chunk.index_select(0, pair) * ABOVE_CHUNK + entry % ABOVE_CHUNK
    found_columns = column.index_select(0, pair)
    found_values = values.view(-1).index_select(0, entry)
    if whole < rows:  # the last rows, fewer than a chunk: compared directly (after every chunk's rows)
        tail = flat[whole:]
        rest = torch.nonzero(compare(tail, threshold))
        found_rows = torch.cat([found_rows, rest[:, 0] + whole])
        found_columns = torch.cat([found_columns, rest[:, 1]])
        found_values = torch.cat([found_values, tail[rest[:, 0], rest[:, 1]]])
    return found_rows, found_columns, found_values


def chunk_maxima(flat: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The maximum of each column over each whole chunk of :data:`ABOVE_CHUNK` rows of ``flat`` ``(rows, m)``,
    contiguous: ``(rows // ABOVE_CHUNK, m)`` (NaN where the chunk holds one), into ``out`` when given."""
    rows, width = flat.shape
    whole = rows - rows % ABOVE_CHUNK
    chunks = flat[:whole].view(whole // ABOVE_CHUNK, ABOVE_CHUNK, width)
    return chunks.amax(1) if out is None else torch.amax(chunks, 1, out=out)


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """The flat indices ``(E,)`` int64 of the true entries of ``mask``, ascending (numpy's on the CPU: a few
    times faster than ``torch.nonzero``)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).reshape(-1)


class _TooMany(Exception):
    """More candidates than the shortcut is worth (see :func:`_first_candidates`)."""


def _first_candidates(
    flat: torch.Tensor, k: int, peaks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """A first batch's entries that can be in their column's top ``k``: every entry at or above the
    column's ``k``-th largest chunk maximum (``k`` chunks hold a value at least that large, so no entry
    below it is among the top ``k``); rows, columns and values ``(E,)`` as :func:`_above` gives them.
    ``None`` (then the exact top of the whole batch decides) for a batch of fewer than ``2 k`` chunks, one
    holding a NaN, or one whose chunk maxima tie so often (a constant column) that the candidates are many."""
    rows, width = flat.shape
    count = rows // ABOVE_CHUNK
    if count < 2 * k or not flat.is_contiguous():
        return None
    peak = peaks if peaks is not None else chunk_maxima(flat)  # (chunks, m)
    if bool(torch.isnan(peak).any()):
        return None
    bound = torch.topk(peak.T.contiguous(), k, dim=1, sorted=False).values.amin(1)  # the k-th largest maximum
    try:
        return _above(flat, bound, inclusive=True, limit=FIRST_CANDIDATES * k * width, peaks=peak)
    except _TooMany:
        return None


def _descending_key(values: torch.Tensor) -> torch.Tensor:
    """What sorts ascending into descending values, NaN last."""
    return torch.where(torch.isnan(values), torch.full_like(values, float("inf")), -values)


def _exact_top(flat: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column of ``flat`` ``(rows, m)`` the ``min(k, rows)`` largest values and their rows ``(j, m)``,
    in descending order, equal values by ascending row (the set is exact: ties at the k-th value keep
    the first rows). One ``torch.topk`` of ``k + 1``; only columns whose (k+1)-th value ties the k-th
    are redone, by a stable sort of those columns."""
    rows = flat.shape[0]
    j = min(k, rows)
    values, index = _top_rows(flat, min(k + 1, rows))
    if torch.isnan(values).any():  # topk ranks NaN above every number: a column with a NaN has one on top
        flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("-inf")), flat)
        values, index = _top_rows(flat, min(k + 1, rows))
    if rows > k:
        tied = torch.nonzero(values[k] == values[k - 1]).reshape(-1)
        values, index = values[:k], index[:k]
        if tied.numel():
            columns = flat[:, tied]
            order = torch.sort(-columns, dim=0, stable=True).indices[:k]
            index[:, tied] = order
            values[:, tied] = columns.gather(0, order)
    # within the set: descending, equal values by row
    by_row = torch.sort(index, dim=0).indices
    values, index = values.gather(0, by_row), index.gather(0, by_row)
    order = torch.sort(_descending_key(values), dim=0, stable=True).indices
    return values.gather(0, order)[:j], index.gather(0, order)[:j]


def _top_rows(flat: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(flat, n, dim=0)``, on a transposed copy (each column's values contiguous: a few times
    faster than along the first dimension). Which of equal values it returns is unspecified either way."""
    values, index = torch.topk(flat.T.contiguous(), n, dim=1)
    return values.T, index.T


KINDS = ("samples", "features", "tokens")


def _kind(inputs: torch.Tensor, per_sample: int, positional: bool) -> str:
    if not inputs.is_floating_point() and inputs.dim() == 2 and positional and per_sample == inputs.shape[1]:
        return "tokens"
    if inputs.is_floating_point() and inputs.dim() == 2 and per_sample == 1:
        return "features"
    return "samples"


def _payload(kind: str, batch: Batch, sample: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor:
    """What each example ``(j, m)`` keeps: its context ids ``(j, m, 2 * CONTEXT + 1)``, its row ``(j, m, d)``,
    or nothing ``(j, m, 0)``."""
    if kind == "tokens" and position is not None:
        ids = batch.inputs.int()  # int32: half the bytes of each kept context
        if batch.mask is not None and batch.mask.shape == ids.shape:
            ids = torch.where(batch.mask, ids, torch.full_like(ids, -1))
        padded = torch.nn.functional.pad(ids, (CONTEXT, CONTEXT), value=-1)
        offsets = torch.arange(2 * CONTEXT + 1, device=ids.device)
        # padded[sample, position + offsets], gathered from the flat ids (cheaper than advanced indexing)
        where = (sample * padded.shape[1] + position)[..., None] + offsets
        return padded.reshape(-1).index_select(0, where.reshape(-1)).view(where.shape)
    if kind == "features" and batch.inputs.shape[1] <= MAX_ROW_FEATURES:
        return batch.inputs.float()[sample]
    return sample.new_zeros(sample.shape + (0,))


def _batch_starts(starts: dict[int, int], batches: np.ndarray) -> np.ndarray:
    """The first global sample of each global batch index in ``batches`` (0 for one not in ``starts``)."""
    if not starts:
        return np.zeros(batches.shape, np.int64)
    known = np.array(sorted(starts), dtype=np.int64)
    first = np.array([starts[int(b)] for b in known], dtype=np.int64)
    where = np.clip(np.searchsorted(known, batches), 0, len(known) - 1)
    return np.where(known[where] == batches, first[where], 0)


def _frequencies(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``ids`` ``(m, j)``: how often each entry's id occurs in its row, and the index of its first
    occurrence in the row, both ``(m, j)``."""
    same = ids[:, :, None] == ids[:, None, :]  # (m, j, j)
    return same.sum(axis=2), same.argmax(axis=2)


def summaries(top: TopExamples, frequencies: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[str, ...]:
    """One line per neuron: ``fires on: rain, storm, forecast`` (its most frequent firing tokens, the
    more frequent first, then the stronger) or ``fires on samples 3, 17, 42, ...``; ``never positive``
    when even its top activation is not above 0. ``frequencies``: :func:`_frequencies` of the firing
    tokens, when the caller has them."""
    m, j = top.values.shape
    fires = top.values[:, 0] > 0 if j else np.zeros(m, bool)
    if top.context is not None and j:
        firing = top.context[:, :, CONTEXT].astype(np.int64)
        counts, first = frequencies if frequencies is not None else _frequencies(firing)
        lead = first == np.arange(j)[None, :]  # each id once, at its first occurrence
        score = np.where(lead & (firing >= 0), counts * (j + 1) + (j - np.arange(j))[None, :], -1)
        chosen = np.argsort(-score, axis=1, kind="stable")[:, :SUMMARY_ITEMS]
        picked = np.take_along_axis(firing, chosen, axis=1)
        # the valid ids lead each row (the others scored -1, below every valid score): a count per row
        count = (np.take_along_axis(score, chosen, axis=1) >= 0).sum(axis=1)
        words = _token_words(top, picked).tolist()  # one text lookup for the whole layer, not one per word
        return tuple(
            "fires on: " + ", ".join(row[:n]) if fired else "never positive"
            for row, n, fired in zip(words, count.tolist(), fires.tolist())
        )
    more = ", ..." if j > SUMMARY_ITEMS else ""
    return tuple(
        "fires on samples " + ", ".join(str(s) for s in row) + more if fires[neuron] else "never positive"
        for neuron, row in enumerate(top.samples[:, :SUMMARY_ITEMS].tolist())
    )


def _token_words(top: TopExamples, ids: np.ndarray) -> np.ndarray:
    """The text of each token id in ``ids`` (any shape; ``#<id>`` for an id without text), an object array."""
    known = top.token_ids
    text = np.empty(len(known), dtype=object)
    text[:] = top.token_text
    where = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
    found = known[where] == ids if len(known) else np.zeros(ids.shape, bool)
    words = text[where] if len(known) else np.empty(ids.shape, dtype=object)
    for index in zip(*np.nonzero(~found), strict=True):  # none for ids taken from the context itself
        words[index] = f"#{int(ids[index])}"
    return words


def selectivity(
    top: TopExamples, mean: np.ndarray | None = None, frequencies: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Per neuron in ``[0, 1]`` (see the module docstring): the share of the most frequent firing token
    among the top ``k`` (tokens), else how far the strongest example stands above the ``k``-th,
    relative to the neuron's ``mean`` activation ``(m,)``. ``frequencies`` as for :func:`summaries`."""
    m, j = top.values.shape
    if j == 0:
        return np.zeros(m)
    if top.context is not None:
        counts, _ = frequencies if frequencies is not None else _frequencies(top.context[:, :, CONTEXT])
        return np.where(top.values[:, 0] > 0, counts.max(axis=1) / j, 0.0)
    centre = np.zeros(m) if mean is None else np.asarray(mean, dtype=np.float64)
    high = top.values[:, 0].astype(np.float64) - centre
    low = top.values[:, -1].astype(np.float64) - centre
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where((high > 0) & (top.values[:, 0] > 0), 1.0 - np.clip(low, 0, None) / high, 0.0)
    return np.nan_to_num(np.clip(share, 0.0, 1.0))


def attach(
    census: tuple[LayerActivations, ...],
    tops: dict[str, TopExamplesStatistic],
    sizes: BatchSizes,
    token_text: Callable[[Sequence[int]], tuple[str, ...]] | None = None,
) -> tuple[LayerActivations, ...]:
    """Each layer's census with its ``top_examples`` filled from ``tops`` (merged), after the pass."""
    if not tops:
        return census
    starts = sizes.finish()
    return tuple(
        replace(c, top_examples=tops[c.layer].finish(starts, c, token_text)) if c.layer in tops else c for c in census
    )


def top_examples_of(census: Sequence[LayerActivations] | None, layer: str) -> TopExamples | None:
    """Layer ``layer``'s top examples in ``census``, ``None`` when it has none."""
    for c in census or ():
        if c.layer == layer:
            return c.top_examples
    return None


def decoded(top: TopExamples, token_text: Callable[[Sequence[int]], tuple[str, ...]]) -> TopExamples:
    """``top`` with its tokens' text (and summaries) from ``token_text``."""
    named = replace(top, token_text=tuple(token_text(top.token_ids.tolist())))
    return replace(named, summary=summaries(named))


def with_token_text(
    census: tuple[LayerActivations, ...], token_text: Callable[[Sequence[int]], tuple[str, ...]]
) -> tuple[LayerActivations, ...]:
    """Each layer's census with its token examples' text from ``token_text`` (the tokens adapter's)."""
    return tuple(
        replace(c, top_examples=decoded(c.top_examples, token_text))
        if c.top_examples is not None and c.top_examples.context is not None
        else c
        for c in census
    )

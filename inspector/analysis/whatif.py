"""What-if curves for tabular inputs: partial dependence and ICE (:func:`partial_dependence`).

For a feature ``j`` and a grid value ``v``, each sample's *ICE* value is the model's
explained target (the task's: the true class's logit for a classifier, the output for a
regression, ``target=``'s value) with feature ``j`` of that sample set to ``v`` and every
other feature kept; the *partial dependence* (PD) is the mean of those values over the
samples (Friedman 2001, "Greedy function approximation", section 8.2; ICE: Goldstein et
al. 2015, "Peeking inside the black box"). A classifier's result also holds the mean
predicted probability of each class at each grid value, which is what scikit-learn's
``partial_dependence`` reports for classifiers (``predict_proba``); the target curve is
the logit so that it matches what the importance section explains and stays additive.

The grid spans each feature's observed range on the samples: ``quantile`` (the default)
puts the points at evenly spaced quantiles, min to max, so they lie where the data does;
``uniform`` spaces them evenly from min to max. A feature with at most ``grid_points``
distinct values uses those values. Streamed in forwards of about ``batch_size`` rows (one
sample repeated once per grid value), accumulated in float64; the model is not changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.findings import Finding
from inspector.analysis.guard import inspecting
from inspector.analysis.importance import ImportanceReport
from inspector.analysis.inputs import as_source, floating_dtype, make_adapter
from inspector.analysis.methods import lead_method
from inspector.analysis.task import Metric, Target, Task, make_task, output_tensor
from inspector.core.adapters import adapter_for
from inspector.errors import InspectorError
from inspector.results import result

GRIDS = ("quantile", "uniform")
MAX_FEATURES = 64
# findings: a curve that changes direction by at least this share of its own range, both ways
TURN_SHARE = 0.25
# a PD effect counts when it moves the target by this share of the target's spread over the samples
EFFECT_SHARE = 0.1
INTERACTION_SHARE = 0.25  # an interaction is named only when single samples move by a quarter of the spread


def _empty(*shape: int, dtype: type = np.float64) -> Any:
    return field(default_factory=lambda: np.zeros(shape, dtype=dtype))


@result
class PartialDependence:
    """Partial dependence and ICE curves of the features of a tabular model.

    ``features`` ``(F,)`` int: the input columns swept, in the order of every per-feature array;
    ``feature_names`` ``(F)``: their names. ``selection``: how they were chosen: ``all`` (every
    column), ``given`` (``features=``), ``importance`` (the :data:`MAX_FEATURES` most important,
    most important first) or ``first`` (the first :data:`MAX_FEATURES` columns).
    ``grid`` ``(F, G)``: each feature's grid values, ascending; a feature with ``n_grid[f] < G``
    distinct grid values repeats its last value (and curve value) to fill the row.
    ``average`` ``(F, G)``: the PD of the target; ``ice`` ``(F, K, G)``: the ICE curves of the
    samples ``ice_samples`` ``(K,)`` (indices into the data, the first ``K``).
    ``class_average`` ``(F, C, G)``: for classifiers, the mean predicted probability of each
    class (softmax of the output); ``None`` otherwise. ``observed`` ``(N, F)``: the swept
    features' values on the samples (for rugs and histograms). ``target``: what the curves show;
    ``task``: the task's kind; ``n_samples``: the samples averaged over; ``target_mean`` and
    ``target_std``: the target on the unedited samples (the scale to read an effect against).
    """

    features: np.ndarray
    feature_names: tuple[str, ...]
    selection: str
    grid_kind: str
    grid: np.ndarray
    n_grid: np.ndarray
    average: np.ndarray
    ice: np.ndarray
    ice_samples: np.ndarray
    target: str
    task: str
    n_samples: int
    target_mean: float
    target_std: float
    class_average: np.ndarray | None = None
    observed: np.ndarray = _empty(0, 0)

    def row(self, feature: int | str) -> int:
        """The position in ``features`` of ``feature`` (an input column number or a name)."""
        if isinstance(feature, str):
            if feature in self.feature_names:
                return self.feature_names.index(feature)
        elif not isinstance(feature, bool) and isinstance(feature, (int, np.integer)):
            hits = np.flatnonzero(self.features == int(feature))
            if hits.size:
                return int(hits[0])
        raise InspectorError(
            f"feature {feature!r} has no what-if curve; these features have one: "
            + ", ".join(self.feature_names[:12])
            + (" ..." if len(self.feature_names) > 12 else "")
        )

    def curve(self, feature: int | str) -> tuple[np.ndarray, np.ndarray]:
        """``(grid, pd)`` of ``feature``, its distinct grid values only."""
        r = self.row(feature)
        n = int(self.n_grid[r])
        return self.grid[r, :n], self.average[r, :n]

    def slope(self, feature: int | str) -> float:
        """The least-squares slope of ``feature``'s PD over its grid (target units per feature unit);
        0 for a feature with a single grid value."""
        x, y = self.curve(feature)
        if x.size < 2 or float(np.ptp(x)) == 0.0:
            return 0.0
        return float(np.polyfit(x, y, 1)[0])

    def effect(self, feature: int | str) -> float:
        """How far ``feature`` moves the PD: its maximum minus its minimum over the grid."""
        return float(np.ptp(self.curve(feature)[1]))


def _feature_ids(
    features: Sequence[int | str] | None, names: tuple[str, ...], ranking: Sequence[int] | np.ndarray | None
) -> tuple[np.ndarray, str]:
    d = len(names)
    if features is None:
        if d <= MAX_FEATURES:
            return np.arange(d, dtype=np.int64), "all"
        if ranking is not None:
            ranked = [int(i) for i in np.asarray(ranking).reshape(-1) if 0 <= int(i) < d]
            ranked = list(dict.fromkeys(ranked))[:MAX_FEATURES]
            if len(ranked) == MAX_FEATURES:
                return np.asarray(ranked, dtype=np.int64), "importance"
        return np.arange(MAX_FEATURES, dtype=np.int64), "first"
    if isinstance(features, (str, int)):
        features = [features]
    picked: list[int] = []
    for f in features:
        if isinstance(f, str):
            if f not in names:
                raise InspectorError(f"unknown feature {f!r}; the inputs' features are {', '.join(names[:12])}...")
            picked.append(names.index(f))
        elif isinstance(f, (int, np.integer)) and not isinstance(f, bool) and 0 <= int(f) < d:
            picked.append(int(f))
        else:
            raise InspectorError(f"unknown feature {f!r}; give a feature name or a column number 0..{d - 1}")
    if not picked:
        raise InspectorError("features= is empty; give at least one feature name or column number")
    return np.asarray(list(dict.fromkeys(picked)), dtype=np.int64), "given"


def _grid(values: np.ndarray, grid_points: int, kind: str) -> np.ndarray:
    """The distinct grid values of one feature observed as ``values`` ``(N,)``, ascending."""
    distinct = np.unique(values)
    if distinct.size <= grid_points:
        return distinct
    if kind == "uniform":
        return np.linspace(distinct[0], distinct[-1], grid_points)
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, grid_points)))


def _target_text(task: Task) -> str:
    if task.target_fn is not None:
        return "the target= function's value"
    if task.kind == "classification":
        return "the true class's logit"
    return "the model's output"


def partial_dependence(
    model: nn.Module,
    data: Any,
    *,
    features: Sequence[int | str] | None = None,
    task: Task | str | None = None,
    target: Target | None = None,
    metric: Metric | None = None,
    feature_names: Sequence[str] | None = None,
    grid_points: int = 20,
    n_ice: int = 20,
    max_samples: int = 1000,
    batch_size: int = 1024,
    grid: str = "quantile",
    ranking: Sequence[int] | np.ndarray | None = None,
) -> PartialDependence:
    """Partial dependence and ICE curves of ``model`` on ``data`` (tabular float ``(n, d)`` inputs).

    Args:
        model: any ``nn.Module``; left as it was (mode, gradients, hooks).
        data, task, target, metric, feature_names: as for :func:`~inspector.analysis.analyze`; the
            curves show the task's explained target (the true class's logit, the regression output,
            ``target``'s value).
        features: column numbers or names to sweep; ``None``: every feature up to
            :data:`MAX_FEATURES`, else the most important by ``ranking`` (feature indices, most
            important first, e.g. an importance method's ``ranking``), else the first ones.
        grid_points: the most grid values per feature (``G``); ``grid``: ``quantile`` or ``uniform``.
        n_ice: how many samples (the first ones) keep their individual curves.
        max_samples: the samples (from the start of the data) the PD averages over.
        batch_size: about how many rows one forward pass takes.
    """
    if grid not in GRIDS:
        raise InspectorError(f"unknown grid {grid!r}; choose from {', '.join(GRIDS)}")
    for name, value, least in (
        ("grid_points", grid_points, 2),
        ("n_ice", n_ice, 0),
        ("max_samples", max_samples, 1),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InspectorError(f"{name} must be an integer of at least {least}, got {value!r}")
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    source = as_source(data, batch_size=batch_size, device=device, dtype=floating_dtype(model))
    chunks = source.head(max_samples)
    if not chunks:
        raise InspectorError(f"the data {source.name!r} holds no samples")
    first = chunks[0]
    adapter = make_adapter(model, first, feature_names=feature_names or source.feature_names or ())
    if not adapter.whatif:
        raise InspectorError(
            "what-if curves need tabular inputs (float, one row of features per sample); these inputs are "
            f"{adapter.description} of shape {tuple(first.inputs.shape[1:])}"
        )
    the_task = task if isinstance(task, Task) else make_task(task, first, target=target, metric=metric)
    columns, selection = _feature_ids(features, adapter.feature_names, ranking)

    observed = torch.cat([b.inputs[:, columns] for b in chunks]).double().cpu().numpy()
    grids = [_grid(observed[:, k], grid_points, grid) for k in range(len(columns))]
    width = max(g.size for g in grids)
    grid_array = np.stack([np.pad(g, (0, width - g.size), mode="edge") for g in grids])
    n_samples = observed.shape[0]
    n_ice = min(n_ice, n_samples)
    sums = np.zeros((len(columns), width), dtype=np.float64)
    ice = np.zeros((len(columns), n_ice, width), dtype=np.float64)
    classifier = the_task.kind == "classification"
    class_sums: np.ndarray | None = None
    plain_sum = plain_sq = 0.0
    per_forward = max(1, batch_size // width)
    dtype = first.inputs.dtype

    with inspecting(model), torch.no_grad():
        seen = 0
        for batch in chunks:
            plain = the_task.target(batch.call(model), batch).double()
            plain_sum += float(plain.sum())
            plain_sq += float((plain * plain).sum())
            for start in range(0, len(batch), per_forward):
                stop = min(start + per_forward, len(batch))
                s = stop - start
                rows = batch.rows(torch.arange(start, stop, device=batch.inputs.device).repeat_interleave(width))
                for k, column in enumerate(columns):
                    grid_values = torch.as_tensor(grid_array[k], dtype=dtype, device=rows.inputs.device)
                    x = rows.inputs.clone()
                    x[:, int(column)] = grid_values.repeat(s)
                    edited = dataclasses.replace(rows, inputs=x)
                    output = edited.call(model)
                    block = the_task.target(output, edited).double().reshape(s, width).cpu().numpy()  # (s, G)
                    sums[k] += block.sum(axis=0)
                    first_ice, last_ice = seen + start, min(seen + stop, n_ice)
                    if first_ice < last_ice:
                        ice[k, first_ice:last_ice] = block[: last_ice - first_ice]
                    if classifier:
                        logits = output_tensor(output).double()
                        softmax = torch.softmax(logits.reshape(logits.shape[0], -1), dim=-1)
                        probs = softmax.reshape(s, width, -1).sum(dim=0).T.cpu().numpy()  # (C, G)
                        if class_sums is None:
                            class_sums = np.zeros((len(columns), probs.shape[0], width), dtype=np.float64)
                        class_sums[k] += probs
            seen += len(batch)

    mean = plain_sum / n_samples
    std = math.sqrt(max(plain_sq / n_samples - mean * mean, 0.0))
    names = tuple(adapter.feature_names[int(c)] for c in columns)
    return PartialDependence(
        features=columns,
        feature_names=names,
        selection=selection,
        grid_kind=grid,
        grid=grid_array,
        n_grid=np.asarray([g.size for g in grids], dtype=np.int64),
        average=sums / n_samples,
        ice=ice,
        ice_samples=np.arange(n_ice, dtype=np.int64),
        target=_target_text(the_task),
        task=the_task.kind,
        n_samples=int(n_samples),
        target_mean=float(mean),
        target_std=float(std),
        class_average=None if class_sums is None else class_sums / n_samples,
        observed=observed,
    )


def importance_ranking(importance: ImportanceReport | None) -> np.ndarray | None:
    """Feature indices, most important first, by Integrated Gradients (else the first method that
    ran) of an importance report on feature columns; ``None`` without one."""
    if importance is None or not adapter_for(importance.input_kind).whatif:
        return None
    lead = lead_method([m for m in importance.methods if m.error is None])
    return lead.ranking if lead is not None else None


def ranked_rows(pd: PartialDependence, ranking: Sequence[int] | np.ndarray | None = None) -> list[int]:
    """The rows of ``pd``, most important feature first by ``ranking`` (feature indices, most important
    first, e.g. :func:`importance_ranking`), else by PD effect, largest first."""
    if ranking is None:
        return [int(r) for r in np.argsort([-pd.effect(int(f)) for f in pd.features], kind="stable")]
    rank = {int(f): k for k, f in enumerate(np.asarray(ranking).reshape(-1))}
    return sorted(range(len(pd.features)), key=lambda r: rank.get(int(pd.features[r]), len(rank)))


def turns(curve: np.ndarray) -> tuple[float, float]:
    """``(largest rise, largest fall)`` of a curve ``(G,)`` read left to right: the most it climbs
    above an earlier value and the most it drops below one (both >= 0)."""
    low = np.minimum.accumulate(curve)
    high = np.maximum.accumulate(curve)
    return float(np.max(curve - low)), float(np.max(high - curve))


def whatif_findings(pd: PartialDependence) -> list[Finding]:
    """Findings worth a line: features whose PD changes direction (rises and falls by at least
    :data:`TURN_SHARE` of its range), and features whose ICE curves move the target but whose PD is
    flat (the effects cancel on average: an interaction; not for classifiers, whose target is each
    sample's own class logit). Only effects of at least :data:`EFFECT_SHARE` of the target's
    spread over the samples count, and for an interaction single-sample effects of at least
    :data:`INTERACTION_SHARE` of it (a trained network's small wobbles on an unused feature are
    not one)."""
    scale = pd.target_std
    if not math.isfinite(scale) or scale <= 0:
        return []
    turning: list[str] = []
    hidden: list[str] = []
    for r, name in enumerate(pd.feature_names):
        n = int(pd.n_grid[r])
        if n < 3:
            continue
        curve = pd.average[r, :n]
        effect = float(np.ptp(curve))
        rise, fall = turns(curve)
        if effect >= EFFECT_SHARE * scale and min(rise, fall) >= TURN_SHARE * effect:
            turning.append(name)
        # a classifier's target is each sample's own class logit: curves of different classes cancel by design
        if pd.ice.shape[1] and pd.task != "classification":
            ice_effect = float(np.mean(np.ptp(pd.ice[r, :, :n], axis=1)))
            if ice_effect >= INTERACTION_SHARE * scale and effect < TURN_SHARE * ice_effect:
                hidden.append(name)
    found = []
    if turning:
        found.append(
            Finding(
                "whatif",
                "info",
                f"{len(turning)} feature(s) move {pd.target} up over part of their range and down over another "
                f"(partial dependence not monotonic): {', '.join(turning[:5])}"
                + (" ..." if len(turning) > 5 else "")
                + "; a single importance score or sign hides this, see their what-if curves",
                {"features": float(len(turning))},
            )
        )
    if hidden:
        found.append(
            Finding(
                "whatif",
                "info",
                f"{len(hidden)} feature(s) change {pd.target} of individual samples but their average effect "
                f"is nearly flat: {', '.join(hidden[:5])}" + (" ..." if len(hidden) > 5 else "") + "; their effect "
                "depends on the other features (an interaction), see their ICE curves",
                {"features": float(len(hidden))},
            )
        )
    return found

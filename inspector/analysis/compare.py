"""Compare two analyses of related models: two epochs of a run, or before and after pruning."""

from __future__ import annotations

import numpy as np
from torch import nn

from inspector.analysis import Analysis
from inspector.analysis.findings import Finding
from inspector.analysis.importance import ImportanceReport
from inspector.analysis.methods import METHOD_LABELS, lead_method
from inspector.analysis.parameters import linear_weights
from inspector.analysis.weights import PooledMap, pool_magnitude
from inspector.results import result


@result
class LayerComparison:
    """One layer in both models (matched by its module path, ``layer``).

    ``change`` holds ``|W_b - W_a|`` (block-max pooled when large) and
    ``relative_change = ||W_b - W_a||_F / ||W_a||_F`` when the shapes match and
    both weights are known. ``died``/``revived`` list neurons dead only in b / only in a.
    """

    layer: str
    shape_a: tuple[int, int] | None
    shape_b: tuple[int, int] | None
    parameters_a: int
    parameters_b: int
    change: PooledMap | None
    relative_change: float | None
    zero_weights_a: int | None
    zero_weights_b: int | None
    died: np.ndarray
    revived: np.ndarray
    dead_a: int | None
    dead_b: int | None


@result
class ImportanceShift:
    """How one attribution method's ranking moved: Spearman correlation of the global
    importances, each model's top features, and each feature's rank in a and b (0 = top)."""

    method: str
    rank_correlation: float
    top_a: tuple[int, ...]
    top_b: tuple[int, ...]
    rank_a: np.ndarray
    rank_b: np.ndarray


@result
class Comparison:
    source_a: str
    source_b: str
    architecture_a: str
    architecture_b: str
    parameters_a: int
    parameters_b: int
    accuracy_a: float | None
    accuracy_b: float | None
    layers: tuple[LayerComparison, ...]
    importance: tuple[ImportanceShift, ...]
    feature_names: tuple[str, ...]
    findings: tuple[Finding, ...]


def _shared_features(
    a: ImportanceReport, b: ImportanceReport
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[str, ...] | None]:
    """For token inputs, where each importance is per distinct token id of its own analysis (an index
    means a different token in a and in b): the positions in a's and in b's importances of the ids both
    saw, and their text; ``(None, None, None)`` for other inputs (their features are the same columns)."""
    if a.input_kind != "tokens" or b.input_kind != "tokens":
        return None, None, None
    shared, in_a, in_b = np.intersect1d(a.token_ids, b.token_ids, return_indices=True)
    names = tuple(a.feature_label(int(i)) for i in in_a) if len(a.feature_names) else tuple(f"#{t}" for t in shared)
    return in_a, in_b, names


def _weights_of(analysis: Analysis, model: nn.Module | None) -> dict[str, np.ndarray]:
    if model is not None:
        return linear_weights(model)
    return {w.layer: w.values for w in analysis.weights or () if w.values is not None}


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(len(values))
    return ranks


def compare(
    a: Analysis, b: Analysis, *, model_a: nn.Module | None = None, model_b: nn.Module | None = None, top_k: int = 5
) -> Comparison:
    """Per-layer differences between ``a`` and ``b``; pass the models to compare layers too large
    for the analyses to keep every weight."""
    weights_a, weights_b = _weights_of(a, model_a), _weights_of(b, model_b)
    params_a = {p.layer: p for p in a.parameters.layers}
    params_b = {p.layer: p for p in b.parameters.layers}
    dead_a = {c.layer: c.dead_mask for c in a.activations or () if c.dead_mask is not None}
    dead_b = {c.layer: c.dead_mask for c in b.activations or () if c.dead_mask is not None}
    names = list(params_a) + [n for n in params_b if n not in params_a]
    layers, found = [], []
    for name in names:
        pa, pb = params_a.get(name), params_b.get(name)
        wa, wb = weights_a.get(name), weights_b.get(name)
        change = relative = None
        if wa is not None and wb is not None and wa.shape == wb.shape:
            diff = wb - wa
            change = pool_magnitude(np.abs(diff))
            norm = float(np.linalg.norm(wa))
            relative = float(np.linalg.norm(diff)) / norm if norm > 0 else float("inf")
        da, db = dead_a.get(name), dead_b.get(name)
        died = revived = np.zeros(0, dtype=np.int64)
        if da is not None and db is not None and da.shape == db.shape:
            died = np.flatnonzero(db & ~da).astype(np.int64)
            revived = np.flatnonzero(da & ~db).astype(np.int64)
        layers.append(
            LayerComparison(
                layer=name,
                shape_a=(pa.out_features, pa.in_features) if pa else None,
                shape_b=(pb.out_features, pb.in_features) if pb else None,
                parameters_a=pa.parameters if pa else 0,
                parameters_b=pb.parameters if pb else 0,
                change=change,
                relative_change=relative,
                zero_weights_a=int((wa == 0).sum()) if wa is not None else None,
                zero_weights_b=int((wb == 0).sum()) if wb is not None else None,
                died=died,
                revived=revived,
                dead_a=int(da.sum()) if da is not None else None,
                dead_b=int(db.sum()) if db is not None else None,
            )
        )
        if relative is not None:
            found.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {name}: weights changed by {100 * relative:.1f}% "
                    "(Frobenius norm of the difference relative to a)",
                    {"relative_change": relative},
                )
            )
        if len(died) or len(revived):
            found.append(
                Finding(
                    "activations",
                    "warning" if len(died) else "info",
                    f"layer {name}: {len(died)} neurons died and {len(revived)} revived between a and b",
                    {"died": len(died), "revived": len(revived)},
                )
            )
        if pa and pb and pa.parameters != pb.parameters:
            found.append(
                Finding(
                    "parameters",
                    "info",
                    f"layer {name}: {pa.parameters:,} -> {pb.parameters:,} parameters",
                    {"parameters_a": pa.parameters, "parameters_b": pb.parameters},
                )
            )
    shifts = []
    feature_names = a.model.feature_names
    if a.importance is not None and b.importance is not None:
        in_a, in_b, aligned_names = _shared_features(a.importance, b.importance)
        if aligned_names is not None:
            feature_names = aligned_names
        for ma in a.importance.methods:
            mb = next((m for m in b.importance.methods if m.method == ma.method), None)
            if mb is None or ma.error or mb.error:
                continue
            ga, gb = ma.global_importance, mb.global_importance
            if in_a is not None and in_b is not None:  # tokens: the ids both analyses saw, in one order
                ga, gb = ga[in_a], gb[in_b]
            if ga.shape != gb.shape or not ga.size:
                continue
            ra, rb = _ranks(ga), _ranks(gb)
            n = len(ra)
            rho = 1 - 6 * float(((ra - rb) ** 2).sum()) / (n * (n * n - 1)) if n > 1 else 1.0
            shifts.append(
                ImportanceShift(
                    ma.method,
                    rho,
                    tuple(int(i) for i in np.argsort(ra)[:top_k]),
                    tuple(int(i) for i in np.argsort(rb)[:top_k]),
                    ra,
                    rb,
                )
            )
        lead = lead_method(shifts)
        if lead is not None:
            found.append(
                Finding(
                    "importance",
                    "info",
                    f"{METHOD_LABELS[lead.method]} feature ranking: Spearman {lead.rank_correlation:.2f} "
                    "between a and b",
                    {"rank_correlation": lead.rank_correlation},
                )
            )
    acc_a = a.data.accuracy if a.data else None
    acc_b = b.data.accuracy if b.data else None
    if acc_a is not None and acc_b is not None:
        found.insert(
            0,
            Finding(
                "summary",
                "info",
                f"accuracy {100 * acc_a:.1f}% -> {100 * acc_b:.1f}% ({100 * (acc_b - acc_a):+.1f} points)",
                {"accuracy_a": acc_a, "accuracy_b": acc_b},
            ),
        )
    return Comparison(
        source_a=a.model.source,
        source_b=b.model.source,
        architecture_a=a.model.architecture,
        architecture_b=b.model.architecture,
        parameters_a=a.parameters.total_parameters,
        parameters_b=b.parameters.total_parameters,
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        layers=tuple(layers),
        importance=tuple(shifts),
        feature_names=feature_names,
        findings=tuple(found),
    )

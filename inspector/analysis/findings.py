"""Plain-language findings, each with the numbers behind it."""

from __future__ import annotations

import math
from typing import Any

from inspector.analysis.activations import DeathTimeline, LayerActivations
from inspector.analysis.diagnostics import RISE_TOLERANCE, TrainingDiagnostics
from inspector.analysis.importance import ImportanceReport
from inspector.analysis.methods import METHOD_LABELS
from inspector.analysis.parameters import ParameterReport
from inspector.analysis.pruning import PruningReport
from inspector.analysis.weights import LayerWeights
from inspector.results import result

SANITY_FAIL = 0.5  # rank correlation with a randomised model above which a method is flagged
ACCURACY_BUDGET = 0.01  # "pruning is free" while accuracy stays within one point
ALPHA_LOW, ALPHA_HIGH = 2.0, 6.0  # WeightWatcher's range of a well-trained layer's power-law exponent
ALPHA_SIGMAS = 2.0  # an alpha is named only when it lies this many standard errors outside [ALPHA_LOW, ALPHA_HIGH]


@result
class Finding:
    """``severity``: ``info`` or ``warning``. ``numbers`` are the values quoted in ``text``."""

    section: str
    severity: str
    text: str
    numbers: dict[str, float]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 neuron``, ``2 neurons``, ``1,634 parameters``: the number and the noun that agrees with it."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _agree(n: int, one: str, many: str) -> str:
    """The word (noun or verb) that agrees with a count of ``n``."""
    return one if n == 1 else many


def score_texts(data: Any) -> tuple[str, str, str]:
    """``(metric name, metric value, ", loss ...")`` of a :class:`~inspector.analysis.result.DataInfo` as text:
    accuracy as a percentage, R² and user metrics as numbers, the loss named unless it is cross-entropy
    (a custom task has none)."""
    name = data.metric_name
    if not math.isfinite(data.metric):
        value = "n/a"
    else:
        value = f"{data.metric:.2%}" if name == "accuracy" else f"{data.metric:.4f}"
    loss = ""
    if data.loss_name is not None and math.isfinite(data.loss):
        label = "loss" if data.loss_name == "cross-entropy" else data.loss_name
        loss = f", {label} {data.loss:.4f}"
    return name, value, loss


def describe_samples(n: int, split: str, name: str | None = None) -> str:
    """``359 digits test samples``; a split of ``all`` (every row of a file) is not a split name: ``600 samples``."""
    words = [name] if name else []
    if split and split != "all":
        words.append(split)
    return " ".join([f"{n:,}", *words, "sample" if n == 1 else "samples"])


def _preview(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def parameter_findings(p: ParameterReport) -> list[Finding]:
    names = [o.name for o in p.other if o.kind == "Conv1D"]
    conv1d = []
    if names:  # Hugging Face's GPT-2 family keeps its dense layers in a transposed "Conv1D"
        conv1d.append(
            Finding(
                "parameters",
                "warning",
                f"{count(len(names), 'Hugging Face Conv1D layer')} ({_preview(names)}): dense layers stored "
                "transposed (GPT-2 style), not analysed as nn.Linear; their parameters are counted under other "
                "parameters",
                {"conv1d_layers": len(names)},
            )
        )
    if not p.layers:
        return [Finding("parameters", "warning", "the model has no nn.Linear layers", {}), *conv1d]
    biggest = max(p.layers, key=lambda layer: layer.parameters)
    share = biggest.parameters / max(p.total_parameters, 1)
    layers = count(len(p.layers), "linear layer")
    where = (
        f" in {layers}"
        if p.linear_parameters == p.total_parameters
        else f", {p.linear_parameters:,} of them in {layers}"
    )
    out = [
        Finding(
            "parameters",
            "info",
            f"{count(p.total_parameters, 'parameter')}{where}; layer {biggest.layer} "
            f"({biggest.in_features}->{biggest.out_features}) holds {_pct(share)} of all parameters",
            {
                "total_parameters": p.total_parameters,
                "linear_parameters": p.linear_parameters,
                "largest_layer_share": share,
            },
        )
    ]
    out += conv1d
    for layer in p.layers:
        if layer.tied_to:
            out.append(
                Finding(
                    "parameters",
                    "info",
                    f"layer {layer.layer} shares its weight with layer {layer.tied_to}; the "
                    f"{layer.out_features * layer.in_features:,} shared weights are counted once, under "
                    f"{layer.tied_to}",
                    {"shared_weights": layer.out_features * layer.in_features},
                )
            )
    return out


def weight_findings(weights: tuple[LayerWeights, ...]) -> list[Finding]:
    out = []
    for w in weights:
        if w.near_zero_fraction >= 0.5:
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: {_pct(w.near_zero_fraction)} of weights are below 1% of the layer's largest "
                    "magnitude; it is a good candidate for pruning",
                    {"near_zero_fraction": w.near_zero_fraction},
                )
            )
        low = min(w.out_features, w.in_features)
        if low >= 8 and w.stable_rank < 0.05 * low:
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: stable rank {w.stable_rank:.1f} of a possible {low}; the layer acts almost "
                    "like a low-rank map",
                    {"stable_rank": w.stable_rank, "max_rank": low},
                )
            )
        # an alpha fitted to n eigenvalues has a standard error of (alpha - 1) / sqrt(n): a short tail's alpha
        # is named only when it is clearly outside the range
        margin = ALPHA_SIGMAS * (w.alpha - 1.0) / math.sqrt(w.alpha_tail_size) if w.alpha_tail_size else math.inf
        if w.alpha + margin < ALPHA_LOW or w.alpha - margin > ALPHA_HIGH:
            shape = (
                "a very heavy tail; in Martin & Mahoney's studies such layers are often over-fitted or carry "
                "a few dominant directions"
                if w.alpha < ALPHA_LOW
                else "a light tail, close to a random matrix's; in Martin & Mahoney's studies such layers are "
                "often under-trained"
            )
            out.append(
                Finding(
                    "weights",
                    "info",
                    f"layer {w.layer}: power-law exponent alpha {w.alpha:.2f} of its eigenvalue spectrum "
                    f"(± {margin / ALPHA_SIGMAS:.2f}, fitted to the top {w.alpha_tail_size} eigenvalues), outside "
                    "the 2 to 6 of well-trained "
                    f"layers: {shape}. A hint to look closer, not a verdict",
                    {"alpha": w.alpha, "alpha_tail_size": w.alpha_tail_size},
                )
            )
    return out


def _census_rows(layer: LayerActivations, split: str) -> str:
    """What a census rate is a fraction of: ``600 test samples``, or ``4,120 positions of 600 test samples``
    when the layer's output has a row per position (or per call)."""
    samples = describe_samples(layer.n_samples, split)
    if layer.n_positions and layer.n_positions != layer.n_samples:
        return f"{count(layer.n_positions, 'position')} of the {samples}"
    return samples


def _unknown_finding(layers: list[LayerActivations], split: str) -> Finding:
    """One finding for every layer whose activation is unknown (a transformer has several per block)."""
    fires = float(sum(float(a.fire_rate.mean()) for a in layers if a.fire_rate is not None) / len(layers))
    never = sum(a.never_positive_count for a in layers)
    width = sum(a.width for a in layers)
    if len(layers) == 1:
        head = (
            f"layer {layers[0].layer}: activation unknown, counted on its pre-activation (declare it with "
            f"activations=); its neurons are positive on {_pct(fires)} of the "
            f"{_census_rows(layers[0], split)} on average"
        )
    else:
        names = ", ".join(a.layer for a in layers[:4]) + (f" and {len(layers) - 4} more" if len(layers) > 4 else "")
        head = (
            f"{len(layers)} layers ({names}): activation unknown, each counted on its pre-activation "
            f"(declare them with activations=); their neurons are positive on {_pct(fires)} of rows on average"
        )
    tail = f"; {never} of {count(width, 'neuron')} {_agree(never, 'is', 'are')} never positive" if never else ""
    return Finding(
        "activations",
        "info",
        head + tail,
        {"layers": len(layers), "width": width, "mean_fire_rate": fires, "never_positive": never},
    )


def activation_findings(census: tuple[LayerActivations, ...], split: str) -> list[Finding]:
    out = []
    unknown = [layer for layer in census if layer.activation == "unknown"]
    if unknown:
        out.append(_unknown_finding(unknown, split))
    for layer in census:
        where = _census_rows(layer, split)
        if layer.activation == "unknown":
            continue
        if layer.fire_rate is not None and layer.dead_mask is None:
            # smooth units (GELU, SiLU) are never exactly "dead": a negative input still passes a
            # gradient; report how often they output ~0, and the units that are never positive
            mean = float(layer.zero_rate.mean()) if layer.zero_rate is not None else 0.0
            never = layer.never_positive_count
            out.append(
                Finding(
                    "activations",
                    "info",
                    f"layer {layer.layer} ({layer.activation}): outputs are near zero on {_pct(mean)} of "
                    f"the {where} on average; units fire (pre-activation > 0) on "
                    f"{_pct(float(layer.fire_rate.mean()))}"
                    + (
                        f"; {never} of {count(layer.width, 'neuron')} {_agree(never, 'is', 'are')} never positive"
                        if never
                        else ""
                    ),
                    {
                        "mean_zero_rate": mean,
                        "mean_fire_rate": float(layer.fire_rate.mean()),
                        "never_positive": never,
                        "width": layer.width,
                    },
                )
            )
        elif layer.fire_rate is not None:
            dead, nearly = layer.dead_count, layer.nearly_dead_count()
            if dead:
                out.append(
                    Finding(
                        "activations",
                        "warning",
                        f"layer {layer.layer}: {dead} of {count(layer.width, 'neuron')} never "
                        f"{_agree(dead, 'fires', 'fire')} on the {where}",
                        {"dead": dead, "width": layer.width, "samples": layer.n_samples},
                    )
                )
            if nearly:
                out.append(
                    Finding(
                        "activations",
                        "info",
                        f"layer {layer.layer}: {nearly} more {_agree(nearly, 'neuron', 'neurons')} "
                        f"{_agree(nearly, 'fires', 'fire')} on fewer than {_pct(layer.nearly_dead_threshold)} of samples",
                        {"nearly_dead": nearly, "threshold": layer.nearly_dead_threshold},
                    )
                )
            if not dead and not nearly:
                out.append(
                    Finding(
                        "activations",
                        "info",
                        f"layer {layer.layer}: "
                        + (f"all {layer.width} neurons fire" if layer.width != 1 else "its one neuron fires")
                        + f" on at least {_pct(layer.nearly_dead_threshold)} of the {where}",
                        {"width": layer.width},
                    )
                )
        elif layer.saturation_rate is not None:
            mean = float(layer.saturation_rate.mean())
            mostly = int((layer.saturation_rate > 0.9).sum())
            severity = "warning" if mean > 0.5 else "info"
            text = (
                f"layer {layer.layer} ({layer.activation}): units are saturated on {_pct(mean)} of samples "
                f"on average; {mostly} of {layer.width} {_agree(mostly, 'is', 'are')} saturated on more than 90%"
            )
            if severity == "warning":
                text += " (vanishing-gradient risk: rescale inputs or weights, or use a rectifier)"
            out.append(
                Finding(
                    "activations",
                    severity,
                    text,
                    {"mean_saturation": mean, "mostly_saturated": mostly, "width": layer.width},
                )
            )
    return out


def death_findings(timeline: DeathTimeline | None) -> list[Finding]:
    if timeline is None:
        return []
    out = []
    for k, name in enumerate(timeline.layers):
        died = timeline.death_epoch[k]
        dead = int((died >= 0).sum())
        if dead:
            out.append(
                Finding(
                    "activations",
                    "info",
                    f"layer {name}: {count(dead, 'neuron')} {_agree(dead, 'is', 'are')} dead at the last snapshot "
                    f"(epoch {int(timeline.epochs[-1])}); the first died by epoch {int(died[died >= 0].min())}",
                    {"dead_at_end": dead, "first_death_epoch": int(died[died >= 0].min())},
                )
            )
    return out


def importance_findings(report: ImportanceReport, feature_names: tuple[str, ...]) -> list[Finding]:
    out = []
    ok = [m for m in report.methods if m.error is None]
    for m in report.methods:
        if m.error is not None:
            out.append(Finding("importance", "warning", f"{METHOD_LABELS[m.method]} could not run: {m.error}", {}))
    if not ok:
        return out
    lead = next((m for m in ok if m.method == "integrated_gradients"), ok[0])
    top = [report.feature_label(i, feature_names) for i in lead.ranking[:3]]
    what = "tokens" if report.input_kind == "tokens" else "inputs"
    out.append(
        Finding(
            "importance",
            "info",
            f"most important {what} by {METHOD_LABELS[lead.method]}: {', '.join(top)}",
            {f"importance_{i}": float(lead.global_importance[j]) for i, j in enumerate(lead.ranking[:3])},
        )
    )
    if lead.method == "integrated_gradients" and lead.convergence_delta is not None:
        out.append(
            Finding(
                "importance",
                "info",
                f"Integrated Gradients convergence delta {lead.convergence_delta:.2g} "
                f"({count(report.n_steps, 'step')}): attributions sum to f(x) - f(baseline) within that",
                {"convergence_delta": lead.convergence_delta},
            )
        )
    # (method, its sanity correlation) where the check ran
    checked = [(m, c) for m in ok if (c := m.sanity_correlation) is not None]
    failing = [(m, c) for m, c in checked if c > SANITY_FAIL]
    if failing:
        listed = ", ".join(f"{METHOD_LABELS[m.method]} ({c:.2f})" for m, c in failing)
        out.append(
            Finding(
                "importance",
                "warning",
                f"on a weight-randomised copy these methods still rank features much as on the trained model: "
                f"{listed}; their maps reflect the input more than the model (Adebayo et al. 2018)",
                {m.method: float(c) for m, c in failing},
            )
        )
    passing = [(m, c) for m, c in checked if c <= SANITY_FAIL]
    if passing:
        best, best_correlation = min(passing, key=lambda pair: pair[1])
        out.append(
            Finding(
                "importance",
                "info",
                f"{len(passing)} of {count(len(ok), 'method')} {_agree(len(passing), 'passes', 'pass')} the "
                "randomisation sanity check; "
                f"{METHOD_LABELS[best.method]} depends most on the weights (rank correlation {best_correlation:.2f})",
                {"passing": len(passing), "best_correlation": best_correlation},
            )
        )
    return out


def _metric_budget(report: PruningReport) -> float:
    """How far the metric may fall for pruning to count as free: one point of accuracy, 0.01 of R²,
    else 1% of the unpruned value (a user metric's scale is unknown)."""
    if report.metric_name in ("accuracy", "R²"):
        return ACCURACY_BUDGET
    return ACCURACY_BUDGET * abs(report.baseline_metric)


def pruning_findings(report: PruningReport) -> list[Finding]:
    if report.metric_name != "accuracy":
        return _metric_pruning_findings(report)
    out = []
    base = report.baseline_metric
    for curve in report.curves:
        tried = [i for i, s in enumerate(curve.sparsity) if s > 0]
        if not tried:
            continue  # only the unpruned model was evaluated: nothing to say about pruning
        within = [i for i in tried if base - curve.metric[i] <= ACCURACY_BUDGET]
        what = PRUNED_SET[curve.scope]
        if within:
            i = max(within)
            s = float(curve.sparsity[i])
            drop = 100 * (base - float(curve.metric[i]))
            cost = f"costs {drop:.1f} points of accuracy" if drop > 0 else "costs no accuracy"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"pruning {_pct(s)} {what} {cost} "
                    f"({_pct(base)} -> {_pct(float(curve.metric[i]))}), leaving {int(curve.parameters_left[i]):,} "
                    f"of the {count(report.total_parameters, 'parameter')} in linear layers",
                    {
                        "sparsity": s,
                        "accuracy_drop_points": drop,
                        "parameters_left": int(curve.parameters_left[i]),
                        "linear_parameters": report.total_parameters,
                    },
                )
            )
        else:
            mildest = min(tried, key=lambda i: curve.sparsity[i])
            drop = 100 * (base - float(curve.metric[mildest]))
            levels = "the one level" if len(tried) == 1 else f"each of the {len(tried)} levels"
            budget = 100 * ACCURACY_BUDGET
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"{curve.scope} pruning: {levels} tried costs more than {budget:g} "
                    f"{_agree(int(budget), 'point', 'points')} of accuracy "
                    f"(pruning {_pct(float(curve.sparsity[mildest]))} {what} costs {drop:.1f} points)",
                    {
                        "baseline_accuracy": base,
                        "mildest_sparsity": float(curve.sparsity[mildest]),
                        "accuracy_drop_points": drop,
                    },
                )
            )
    if report.dead_removed_metric is not None and report.dead_removed_count:
        change = 100 * (report.dead_removed_metric - base)
        n = report.dead_removed_count
        out.append(
            Finding(
                "pruning",
                "info",
                f"removing the {count(n, 'dead neuron')} changes accuracy by {change:+.1f} points",
                {"dead_removed": n, "accuracy_change_points": change},
            )
        )
    return out


PRUNED_SET = {
    "global": "of weights (global magnitude)",
    "layer": "of each layer's weights",
    "neuron": "of hidden neurons (weakest first)",
}


def _metric_pruning_findings(report: PruningReport) -> list[Finding]:
    """:func:`pruning_findings` for a metric other than accuracy (R², a user metric, the mean target):
    the same claims in the metric's own units. A mean target is not better when larger, so
    there the budget bounds the change either way."""
    out: list[Finding] = []
    base, name = report.baseline_metric, report.metric_name
    if not math.isfinite(base):
        return out  # an undefined baseline (R² of constant targets): no claim can be measured against it
    budget = _metric_budget(report)
    two_sided = name == "mean target"
    for curve in report.curves:
        tried = [i for i, s in enumerate(curve.sparsity) if s > 0 and math.isfinite(curve.metric[i])]
        if not tried:
            continue
        drops = {i: base - float(curve.metric[i]) for i in tried}
        within = [i for i in tried if (abs(drops[i]) if two_sided else drops[i]) <= budget]
        what = PRUNED_SET[curve.scope]
        if within:
            i = max(within)
            s = float(curve.sparsity[i])
            if two_sided:
                cost = f"changes the {name} by {-drops[i]:+.3g}"
            else:
                cost = f"lowers {name} by {drops[i]:.3g}" if drops[i] > 0 else f"does not lower {name}"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"pruning {_pct(s)} {what} {cost} ({base:.4g} -> {float(curve.metric[i]):.4g}), leaving "
                    f"{int(curve.parameters_left[i]):,} of the {count(report.total_parameters, 'parameter')} in "
                    "linear layers",
                    {
                        "sparsity": s,
                        "metric_drop": drops[i],
                        "parameters_left": int(curve.parameters_left[i]),
                        "linear_parameters": report.total_parameters,
                    },
                )
            )
        else:
            mildest = min(tried, key=lambda i: curve.sparsity[i])
            levels = "the one level" if len(tried) == 1 else f"each of the {len(tried)} levels"
            verb = "changes" if two_sided else "lowers"
            amount = f"{-drops[mildest]:+.3g}" if two_sided else f"{drops[mildest]:.3g}"
            out.append(
                Finding(
                    "pruning",
                    "info",
                    f"{curve.scope} pruning: {levels} tried {verb} {name} by more than {budget:.3g} "
                    f"(pruning {_pct(float(curve.sparsity[mildest]))} {what} {verb} it by {amount})",
                    {
                        "baseline_metric": base,
                        "mildest_sparsity": float(curve.sparsity[mildest]),
                        "metric_drop": drops[mildest],
                    },
                )
            )
    if report.dead_removed_metric is not None and report.dead_removed_count:
        change = report.dead_removed_metric - base
        n = report.dead_removed_count
        out.append(
            Finding(
                "pruning",
                "info",
                f"removing the {count(n, 'dead neuron')} changes {name} by {change:+.3g} "
                f"({base:.4g} -> {report.dead_removed_metric:.4g})",
                {"dead_removed": n, "metric_change": change},
            )
        )
    return out


def training_findings(d: TrainingDiagnostics) -> list[Finding]:
    out = []
    if d.nonfinite_epochs:
        out.append(
            Finding(
                "training",
                "warning",
                f"the training or validation loss was NaN or Inf in {d.nonfinite_epochs} of "
                f"{count(d.epochs_run, 'epoch')}: training diverged or was numerically unstable there "
                "(lower the learning rate or check the inputs)",
                {"nonfinite_epochs": d.nonfinite_epochs},
            )
        )
    if d.overfitting_epoch is not None:
        best, w = d.overfitting_epoch - 1, d.smoothing_window
        if d.final_val_loss_rise >= RISE_TOLERANCE:
            trend = (
                f"validation loss rose after epoch {best} (over the last {count(w, 'epoch')} it averaged "
                f"{_pct(d.final_val_loss_rise)} above its smoothed minimum)"
            )
        else:
            trend = f"validation loss has not improved since epoch {best} ({count(d.epochs_run - best, 'epoch')} ago)"
        out.append(
            Finding(
                "training",
                "warning",
                f"{trend}, while the gap between validation and training loss grew by "
                f"{_pct(d.loss_gap_growth)} of that minimum: the model began to overfit",
                {
                    "overfitting_epoch": d.overfitting_epoch,
                    "val_loss_rise": d.final_val_loss_rise,
                    "loss_gap_growth": d.loss_gap_growth,
                },
            )
        )
    if d.stopped_early:
        out.append(
            Finding(
                "training",
                "info",
                f"early stopping ended training at epoch {d.epochs_run} and restored epoch {d.best_epoch}",
                {"epochs_run": d.epochs_run, "best_epoch": d.best_epoch},
            )
        )
    if d.metric_name == "accuracy":
        gap = 100 * d.accuracy_gap
        out.append(
            Finding(
                "training",
                "warning" if gap > 5 else "info",
                f"train/validation accuracy gap at the best epoch: {gap:.1f} points",
                {"accuracy_gap_points": gap},
            )
        )
    else:  # R² (or another metric) is not a percentage: the gap as a number
        gap = d.accuracy_gap
        out.append(
            Finding(
                "training",
                "warning" if gap > 0.05 else "info",
                f"train/validation {d.metric_name} gap at the best epoch: {gap:.3f}",
                {"metric_gap": gap},
            )
        )
    return out

"""Plain-language findings, each with the numbers behind it."""

from __future__ import annotations

from inspector.analysis.activations import DeathTimeline, LayerActivations
from inspector.analysis.diagnostics import TrainingDiagnostics
from inspector.analysis.importance import METHOD_LABELS, ImportanceReport
from inspector.analysis.parameters import ParameterReport
from inspector.analysis.pruning import PruningReport
from inspector.analysis.weights import LayerWeights
from inspector.results import result

SANITY_FAIL = 0.5  # rank correlation with a randomised model above which a method is flagged
ACCURACY_BUDGET = 0.01  # "pruning is free" while accuracy stays within one point


@result
class Finding:
    """``severity``: ``info`` or ``warning``. ``numbers`` are the values quoted in ``text``."""

    section: str
    severity: str
    text: str
    numbers: dict[str, float]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def parameter_findings(p: ParameterReport) -> list[Finding]:
    if not p.layers:
        return [Finding("parameters", "warning", "the model has no nn.Linear layers", {})]
    biggest = max(p.layers, key=lambda layer: layer.parameters)
    share = biggest.parameters / max(p.total_parameters, 1)
    return [Finding(
        "parameters", "info",
        f"{p.total_parameters:,} parameters in {len(p.layers)} linear layers; layer {biggest.name} "
        f"({biggest.in_features}->{biggest.out_features}) holds {_pct(share)} of them",
        {"total_parameters": p.total_parameters, "largest_layer_share": share},
    )]


def weight_findings(weights: tuple[LayerWeights, ...]) -> list[Finding]:
    out = []
    for w in weights:
        if w.near_zero_fraction >= 0.5:
            out.append(Finding(
                "weights", "info",
                f"layer {w.name}: {_pct(w.near_zero_fraction)} of weights are below 1% of the layer's largest "
                "magnitude; it is a good candidate for pruning",
                {"near_zero_fraction": w.near_zero_fraction}))
        low = min(w.out_features, w.in_features)
        if low >= 8 and w.stable_rank < 0.05 * low:
            out.append(Finding(
                "weights", "info",
                f"layer {w.name}: stable rank {w.stable_rank:.1f} of a possible {low}; the layer acts almost "
                "like a low-rank map",
                {"stable_rank": w.stable_rank, "max_rank": low}))
    return out


def activation_findings(census: tuple[LayerActivations, ...], split: str) -> list[Finding]:
    out = []
    for layer in census:
        if layer.fire_rate is not None:
            dead, nearly = layer.dead_count, layer.nearly_dead_count()
            if dead:
                out.append(Finding(
                    "activations", "warning",
                    f"layer {layer.linear}: {dead} of {layer.width} neurons never fire on the "
                    f"{layer.n_samples} {split} samples",
                    {"dead": dead, "width": layer.width, "samples": layer.n_samples}))
            if nearly:
                out.append(Finding(
                    "activations", "info",
                    f"layer {layer.linear}: {nearly} more neurons fire on fewer than "
                    f"{_pct(layer.nearly_dead_threshold)} of samples",
                    {"nearly_dead": nearly, "threshold": layer.nearly_dead_threshold}))
            if not dead and not nearly:
                out.append(Finding(
                    "activations", "info",
                    f"layer {layer.linear}: all {layer.width} neurons fire on at least "
                    f"{_pct(layer.nearly_dead_threshold)} of the {layer.n_samples} {split} samples",
                    {"width": layer.width}))
        elif layer.saturation_rate is not None:
            mean = float(layer.saturation_rate.mean())
            mostly = int((layer.saturation_rate > 0.9).sum())
            severity = "warning" if mean > 0.5 else "info"
            text = (f"layer {layer.linear} ({layer.activation}): units are saturated on {_pct(mean)} of samples "
                    f"on average; {mostly} of {layer.width} are saturated on more than 90%")
            if severity == "warning":
                text += " (vanishing-gradient risk: rescale inputs or weights, or use a rectifier)"
            out.append(Finding("activations", severity, text,
                               {"mean_saturation": mean, "mostly_saturated": mostly, "width": layer.width}))
    return out


def death_findings(timeline: DeathTimeline | None) -> list[Finding]:
    if timeline is None:
        return []
    out = []
    for k, name in enumerate(timeline.layers):
        died = timeline.death_epoch[k]
        count = int((died >= 0).sum())
        if count:
            out.append(Finding(
                "activations", "info",
                f"layer {name}: {count} neurons are dead at the last snapshot (epoch {int(timeline.epochs[-1])}); "
                f"the first died by epoch {int(died[died >= 0].min())}",
                {"dead_at_end": count, "first_death_epoch": int(died[died >= 0].min())}))
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
    top = [feature_names[i] if i < len(feature_names) else f"x{i}" for i in lead.ranking[:3]]
    out.append(Finding("importance", "info",
                       f"most important inputs by {METHOD_LABELS[lead.method]}: {', '.join(top)}",
                       {f"importance_{i}": float(lead.global_importance[j]) for i, j in enumerate(lead.ranking[:3])}))
    if lead.method == "integrated_gradients" and lead.convergence_delta is not None:
        out.append(Finding("importance", "info",
                           f"Integrated Gradients convergence delta {lead.convergence_delta:.2g} "
                           f"({report.n_steps} steps): attributions sum to f(x) - f(baseline) within that",
                           {"convergence_delta": lead.convergence_delta}))
    failing = [m for m in ok if m.sanity_correlation is not None and m.sanity_correlation > SANITY_FAIL]
    if failing:
        listed = ", ".join(f"{METHOD_LABELS[m.method]} ({m.sanity_correlation:.2f})" for m in failing)
        out.append(Finding(
            "importance", "warning",
            f"on a weight-randomised copy these methods still rank features much as on the trained model: "
            f"{listed}; their maps reflect the input more than the model (Adebayo et al. 2018)",
            {m.method: float(m.sanity_correlation) for m in failing}))
    passing = [m for m in ok if m.sanity_correlation is not None and m.sanity_correlation <= SANITY_FAIL]
    if passing:
        best = min(passing, key=lambda m: m.sanity_correlation)
        out.append(Finding(
            "importance", "info",
            f"{len(passing)} of {len(ok)} methods pass the randomisation sanity check; "
            f"{METHOD_LABELS[best.method]} depends most on the weights (rank correlation {best.sanity_correlation:.2f})",
            {"passing": len(passing), "best_correlation": best.sanity_correlation}))
    return out


def pruning_findings(report: PruningReport) -> list[Finding]:
    out = []
    base = report.baseline_accuracy
    for curve in report.curves:
        within = [i for i, a in enumerate(curve.accuracy) if base - a <= ACCURACY_BUDGET]
        i = max(within) if within else 0
        s = float(curve.sparsity[i])
        drop = 100 * (base - float(curve.accuracy[i]))
        what = {"global": "of weights (global magnitude)", "layer": "of each layer's weights",
                "neuron": "of hidden neurons (weakest first)"}[curve.scope]
        if s > 0:
            cost = f"costs {drop:.1f} points of accuracy" if drop > 0 else "costs no accuracy"
            out.append(Finding(
                "pruning", "info",
                f"pruning {_pct(s)} {what} {cost} "
                f"({_pct(base)} -> {_pct(float(curve.accuracy[i]))}), leaving {int(curve.parameters_left[i]):,} "
                f"of {report.total_parameters:,} parameters",
                {"sparsity": s, "accuracy_drop_points": drop, "parameters_left": int(curve.parameters_left[i])}))
        else:
            out.append(Finding("pruning", "info",
                               f"every {curve.scope} pruning level tried costs more than 1 point of accuracy",
                               {"baseline_accuracy": base}))
    if report.dead_removed_accuracy is not None and report.dead_removed_count:
        change = 100 * (report.dead_removed_accuracy - base)
        out.append(Finding(
            "pruning", "info",
            f"removing the {report.dead_removed_count} dead neurons changes accuracy by {change:+.1f} points",
            {"dead_removed": report.dead_removed_count, "accuracy_change_points": change}))
    return out


def training_findings(d: TrainingDiagnostics) -> list[Finding]:
    out = []
    if d.overfitting_epoch is not None:
        out.append(Finding(
            "training", "warning",
            f"validation loss rose after epoch {d.overfitting_epoch - 1} "
            f"({_pct(d.final_val_loss_rise)} above its minimum by epoch {d.epochs_run}) while training loss kept "
            "falling: the model began to overfit",
            {"overfitting_epoch": d.overfitting_epoch, "val_loss_rise": d.final_val_loss_rise}))
    if d.stopped_early:
        out.append(Finding("training", "info",
                           f"early stopping ended training at epoch {d.epochs_run} and restored epoch {d.best_epoch}",
                           {"epochs_run": d.epochs_run, "best_epoch": d.best_epoch}))
    gap = 100 * d.accuracy_gap
    out.append(Finding("training", "warning" if gap > 5 else "info",
                       f"train/validation accuracy gap at the best epoch: {gap:.1f} points",
                       {"accuracy_gap_points": gap}))
    return out


"""Text summaries for the terminal: a torchinfo-like table and the headline findings."""

from __future__ import annotations

from inspector.analysis import Analysis
from inspector.analysis.findings import describe_samples, score_texts
from inspector.analysis.parameters import ParameterReport, trainable_text
from inspector.inventory import human_bytes


def format_parameters(report: ParameterReport) -> str:
    """One row per linear layer with its arithmetic (m*(n+1), or m*n without a bias), then totals.

    A tensor shared by several layers is counted in the first, so the rows add up to
    the linear total.
    """
    head = ("layer", "in n", "out m", "parameters", "MACs/sample", "trainable")
    rows = [
        (
            layer.layer + (f" (tied to {layer.tied_to})" if layer.tied_to else ""),
            f"{layer.in_features:,}",
            f"{layer.out_features:,}",
            f"{layer.formula('*', space='')} = {layer.parameters:,}",
            f"{layer.macs_per_sample:,}",
            trainable_text(layer.trainable),
        )
        for layer in report.layers
    ]
    rows += [
        (
            f"{e.layer} (embedding)" + (f" (tied to {e.tied_to})" if e.tied_to else ""),
            f"{e.num_embeddings:,}",
            f"{e.embedding_dim:,}",
            f"{e.formula('*', space='')} = {e.parameters:,}",
            "",
            trainable_text(e.trainable),
        )
        for e in report.embeddings
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "=" * len(line(head))
    out = [rule, line(head), rule, *map(line, rows), rule]
    out.append(f"Linear parameters: {report.linear_parameters:,}")
    if report.embeddings:
        out.append(f"Embedding parameters: {report.embedding_parameters:,}")
    if report.other:
        kinds = ", ".join(sorted({o.kind for o in report.other}))
        out.append(f"Other parameters ({kinds}): {report.other_parameters:,}")
    trainable = (
        f"{report.trainable_parameters:,}"
        if report.trainable_parameters is not None
        else "unknown: a file does not record it"
    )
    out.append(f"Total parameters: {report.total_parameters:,}  (trainable {trainable})")
    out.append(f"Multiply-adds per sample: {report.macs_per_sample:,}")
    out.append(f"Parameter size: {human_bytes(report.total_bytes)}")
    out.append(rule)
    return "\n".join(out)


def format_summary(analysis: Analysis) -> str:
    """The parameter table, the evaluation result and the findings."""
    parts = [analysis.model.architecture + f"  [{analysis.model.source}]", format_parameters(analysis.parameters)]
    if analysis.data is not None:
        d = analysis.data
        parts.append(
            f"evaluated on {describe_samples(d.n_samples, d.split, d.name)}: " + "{} {}{}".format(*score_texts(d))
        )
        if analysis.activations is None and analysis.importance is None and analysis.pruning is None:
            parts.append("data sections (activations, importance, pruning) were not requested (see --sections)")
    elif not analysis.model.layer_sizes:
        parts.append("weight-only: the file's weights do not rebuild as one model, so no data can be run through it")
    else:
        parts.append("no evaluation data: weight-only sections (pass --data for activations, importance, pruning)")
    if analysis.model.dtype != "fp32":
        parts.append(
            f"census, evaluation and pruning forwards in {analysis.model.dtype} (a cast copy); importance in float32"
        )
    parts.append("findings:")
    parts += [f"  {'!' if f.severity == 'warning' else '-'} {f.text}" for f in analysis.findings]
    return "\n".join(parts)

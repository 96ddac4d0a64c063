"""Terminal tables: the one renderer of every table the CLI prints, and the tables themselves.

:func:`text_table` lays out columns (widths from the widest cell, left- or right-aligned);
:func:`format_inventory` (``inspector info``), :func:`format_parameters` (``train``,
``analyze``) and :func:`format_summary` (``analyze``) read results and use it. None computes a
number: they format what the inventory and the analysis hold.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspector.analysis import Analysis
from inspector.analysis.findings import describe_samples, score_texts
from inspector.analysis.parameters import ParameterReport, embedding_row, layer_row, trainable_text
from inspector.checks import printable, printable_lines
from inspector.inventory import Inventory


def text_table(
    head: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    *,
    left: tuple[int, ...] = (0,),
    total: tuple[str, ...] | None = None,
    rule: str = "-",
) -> list[str]:
    """The lines of a table: columns in ``left`` left-aligned, the others right-aligned.

    ``rule="-"``: the header, a rule, the rows, and with ``total`` a rule and the totals row.
    ``rule="="``: framed torchinfo-style, a rule above and below the header and below the rows
    (``total`` then follows the last rule). A column is as wide as its widest cell.
    """
    lines_in = (head, *rows, *([total] if total is not None else []))
    widths = [max(len(str(r[i])) for r in lines_in) for i in range(len(head))]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    bar = rule * len(line(head))
    if rule == "=":
        out = [bar, line(head), bar, *map(line, rows), bar]
        return out + ([line(total)] if total is not None else [])
    return [line(head), bar, *map(line, rows)] + ([bar, line(total)] if total is not None else [])


def human_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1: ``384 B``, ``12.6 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_inventory(inv: Inventory) -> str:
    """A torchinfo-like text table: one row per linear layer, one per embedding table, then totals.

    The parameters column shows each row's arithmetic with the analyze table's
    :meth:`~inspector.analysis.parameters.LayerParameters.formula` (``m*(n+1)``, ``m*n``
    without a bias, and only what a tied row counts). A file does not record which
    parameters are trainable, so no row says so.
    """

    def named(name: str, tied_to: str | None) -> str:
        return printable(name + (f" (tied to {tied_to})" if tied_to else ""))

    rows = []
    for layer in inv.linear_layers:
        arithmetic = layer_row(layer).formula("*", space="")
        rows.append(
            (
                named(layer.layer, layer.tied_to),
                f"{layer.in_features:,}",
                f"{layer.out_features:,}",
                f"{layer.weights:,}",
                f"{layer.biases:,}",
                f"{printable(arithmetic)} = {layer.parameters:,}",
                layer.dtype,
                human_bytes(layer.bytes),
            )
        )
    totals = inv.totals()
    out: list[str] = []
    if rows or not inv.embeddings:
        out += text_table(
            ("layer", "in n", "out m", "weights", "biases", "parameters", "dtype", "bytes"),
            rows,
            total=(
                "total",
                "",
                "",
                f"{totals['weights']:,}",
                f"{totals['biases']:,}",
                f"{totals['parameters']:,}",
                "",
                human_bytes(totals["bytes"]),
            ),
            left=(0, 6),
        )
    if inv.embeddings:
        tables = []
        for e in inv.embeddings:
            arithmetic = embedding_row(e).formula("*", space="")
            tables.append(
                (
                    named(e.layer, e.tied_to),
                    f"{e.num_embeddings:,}",
                    f"{e.embedding_dim:,}",
                    f"{printable(arithmetic)} = {e.parameters:,}",
                    e.dtype,
                    human_bytes(e.bytes),
                )
            )
        out += [""] * bool(out) + text_table(
            ("embedding", "num_embeddings", "embedding_dim", "parameters", "dtype", "bytes"),
            tables,
            total=(
                "total",
                "",
                "",
                f"{totals['embedding_parameters']:,}",
                "",
                human_bytes(sum(e.bytes for e in inv.embeddings)),
            ),
            left=(0, 4),
        )
    others = [t for t in inv.other_tensors if t.tied_to is None]
    if others:
        out.append(
            f"other tensors (norms, biases, ...): {totals['other_parameters']:,} parameters "
            f"in {len(others):,} {'tensor' if len(others) == 1 else 'tensors'}"
        )
    integers = inv.integer_tensors
    if integers:
        shown = ", ".join(printable(t.name) for t in integers[:3]) + (", ..." if len(integers) > 3 else "")
        out.append(f"integer tensors (buffers, not parameters): {len(integers):,} ({shown})")
    if inv.embeddings or others:
        out.append(
            f"total parameters: {totals['total_parameters']:,} (linear {totals['parameters']:,}, "
            f"embeddings {totals['embedding_parameters']:,}, other {totals['other_parameters']:,})"
        )
    return "\n".join(out)


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
    out = text_table(head, rows, left=(0, 5), rule="=")
    rule = out[0]
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
    return printable_lines("\n".join(parts))  # names from files (features, classes, layers) are data

"""``inspector report``: a report of one analysis, a comparison of two, or of training runs."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from inspector.analysis import distributed
from inspector.analysis.compare import compare
from inspector.cli import unescaped_stdout
from inspector.cli.commands.common import (
    analysis_for,
    check_out_as_writer,
    check_subject,
    factory_inputs,
    input_files,
    note,
    on_ranks,
    runs_in,
)
from inspector.errors import InspectorError
from inspector.fileio import check_writable
from inspector.render import format_for, is_own_report, render_text, write_report
from inspector.render.export import check_png_folder
from inspector.render.live import run_html, write_run_report
from inspector.workflows import newest_snapshot_analysis, read_runs


def run(args: argparse.Namespace) -> int:
    if len(args.paths) > 2:
        raise InspectorError("give one path for a report or two for a comparison")
    check_subject(args, bool(args.paths), "a PATH")
    to_stdout = str(args.out) == "-"
    fmt = format_for(args.out, args.format)
    if to_stdout and fmt in ("pdf", "png"):
        raise InspectorError(f"{fmt} reports can't go to standard output; give a file name to --out")
    return on_ranks(args, lambda: _report(args, fmt, to_stdout))


def _check_out(args: argparse.Namespace, fmt: str, to_stdout: bool) -> None:
    inputs = input_files(*args.paths, *factory_inputs(args))
    if to_stdout:
        return
    if fmt == "png":  # before the analysis, not after
        check_png_folder(args.out, force=args.force, inputs=inputs)
    else:
        check_writable(args.out, force=args.force, inputs=inputs, ours=partial(is_own_report, fmt=fmt))


def _report(args: argparse.Namespace, fmt: str, to_stdout: bool) -> int:
    check_out_as_writer(lambda: _check_out(args, fmt, to_stdout))
    runs = runs_in(args.paths[0]) if len(args.paths) == 1 and args.model is None else []
    if runs:
        if distributed.is_writer():  # nothing to share out: rank 0 alone reads the runs and writes
            _write_run_report(runs, args, fmt, to_stdout)
        return 0
    analysis, model = analysis_for(args.paths[0] if args.paths else None, args)
    subject = analysis
    if len(args.paths) == 2:
        other, other_model = analysis_for(args.paths[1], args)
        subject = compare(analysis, other, model_a=model, model_b=other_model)
    if not distributed.is_writer():  # every rank holds the same merged analysis; rank 0 writes it
        return 0
    if to_stdout:
        unescaped_stdout().write(render_text(subject, fmt))  # a document; Markdown's names escaped already
        return 0
    write_report(subject, args.out, fmt, force=args.force)
    print(f"wrote {args.out} ({fmt})")
    return 0


def _write_run_report(runs: list[Path], args: argparse.Namespace, fmt: str, to_stdout: bool) -> None:
    histories, skipped = read_runs(runs, args.paths[0])
    for path, why in skipped:
        note(f"skipped {path}: {why}")
    analysis = newest_snapshot_analysis(histories[0])
    if to_stdout:
        if fmt != "html":
            raise InspectorError(f"a run's report is HTML or PDF, not {fmt}")
        unescaped_stdout().write(run_html(histories, analysis))  # HTML, escaped by its own rules
        return
    write_run_report(histories, analysis, args.out, fmt, force=args.force)
    print(f"wrote {args.out} ({fmt})")

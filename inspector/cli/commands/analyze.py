"""``inspector analyze``: analyse a checkpoint or --model, save the result folder, print the summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.analysis import AnalysisOptions, distributed
from inspector.cli.commands.common import (
    analysis_for,
    check_out_as_writer,
    check_subject,
    factory_inputs,
    input_files,
    on_ranks,
    options_for,
)
from inspector.render.tables import format_summary
from inspector.results import check_result_folder, result_files


def _csv(text: str | None) -> tuple[str, ...] | None:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def run(args: argparse.Namespace) -> int:
    check_subject(args, args.checkpoint is not None, "a checkpoint")
    return on_ranks(args, lambda: _analyze_and_write(args))


def _analysis_inputs(args: argparse.Namespace) -> list[Path]:
    return input_files(args.checkpoint, *factory_inputs(args))


def _analyze_and_write(args: argparse.Namespace) -> int:
    check_out_as_writer(lambda: check_result_folder(args.out, force=args.force, inputs=_analysis_inputs(args)))
    defaults = AnalysisOptions()
    options = options_for(
        args,
        sections=_csv(args.sections) or defaults.sections,
        methods=_csv(args.methods) or defaults.methods,
        n_steps=args.steps,
        nearly_dead_threshold=args.nearly_dead,
        finetune_epochs=args.finetune_epochs,
        top_k=args.top_k,
    )
    analysis, _ = analysis_for(args.checkpoint, args, options)
    if not distributed.is_writer():  # every rank holds the same merged analysis; rank 0 writes it
        return 0
    analysis.save(args.out, force=args.force)
    print(format_summary(analysis))
    json_path, arrays_path = result_files(args.out)
    print(
        f"wrote {json_path} and {arrays_path} in {sum(v for k, v in analysis.timings.items() if '/' not in k):.1f} s of analysis"
    )
    return 0

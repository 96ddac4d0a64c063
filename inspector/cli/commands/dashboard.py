"""``inspector dashboard``: serve the Dash dashboard for a path, a run folder, --model or the demo."""

from __future__ import annotations

import argparse
import os
import sys

from dashboards import app as dashboard_app  # as a module: tests replace its serve and check_port
from dashboards.launch import app_for_path, app_for_run, app_for_runs
from dashboards.security import TOKEN_ENV, auth_token
from inspector.cli.commands.common import (
    check_subject,
    data_factory_given,
    device_for,
    factory_run,
    opens_as_analysis,
    options_for,
    runs_in,
    text_given,
    text_run,
)
from inspector.errors import InspectorError


def run(args: argparse.Namespace) -> int:
    check_subject(args, args.path is not None, "a PATH")
    dashboard_app.check_port(args.host, args.port)  # before minutes of training or analysis, not after
    # the token too (an explicit --no-auth wins over the environment's, not over --token)
    given = args.token if args.token is not None else (None if args.no_auth else os.environ.get(TOKEN_ENV) or None)
    token = auth_token(args.host, given, args.no_auth)

    def log(message: str) -> None:
        print(f"inspector: {message}", file=sys.stderr)

    if text_given(args):
        app = app_for_run(text_run(args.path, args, options_for(args), notify=lambda m: log(f"note: {m}")))
    elif args.model is None and args.path is not None and runs_in(args.path):
        app = app_for_runs(args.path, refresh=args.refresh, log=log)
    elif args.path is not None and args.path.is_dir() and not opens_as_analysis(args.path):
        raise InspectorError(
            f"{args.path} holds no training run, analysis or sharded checkpoint; dashboard accepts a checkpoint, "
            "an analysis folder, a run directory (run.sqlite) or a folder of runs"
        )
    elif args.model is not None or data_factory_given(args):
        app = app_for_run(factory_run(args, options_for(args), args.path, notify=lambda m: log(f"note: {m}")))
    else:
        app = app_for_path(
            args.path,
            data=args.data,
            label_column=args.label_column,
            activation=args.activation,
            trust_pickle=args.trust_pickle,
            options=options_for(args),
            device=device_for(args),
            log=log,
        )
    dashboard_app.serve(
        app, args.host, args.port, debug=args.debug, allow_hosts=args.allow_host, token=token, no_auth=args.no_auth
    )
    return 0

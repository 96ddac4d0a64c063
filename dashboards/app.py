"""The Dash app: ``create_app(analysis)`` builds it, ``serve(app)`` runs it.

    from dashboards.app import create_app, serve
    app = create_app(analysis, model=model, data=data)   # model and data enable on-demand views
    serve(app)                                           # http://127.0.0.1:8050
    serve(app, jupyter_mode="inline")                    # inside a notebook
    serve(app, host="0.0.0.0", allow_hosts=["box.lan"])  # on a network: prints http://box.lan:8050/?token=...
    # under gunicorn: app.server is the Flask WSGI app (see dashboards/wsgi.py)

The server answers only requests addressed to a host it was told about
(loopback, the bound name, ``allow_hosts``), and off loopback only those
carrying its token; see dashboards/security.py.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from dash import Dash, dcc, html
from torch import nn

from dashboards import ids
from dashboards.registry import views
from dashboards.security import (
    LOOPBACK_HOSTS,
    allowed_hosts,
    auth_token,
    dashboard_url,
    hide_token_in_logs,
    is_loopback,
    normalise_host,
    protect,
    set_allowed_hosts,
    set_token,
)
from dashboards.state import DashboardState
from dashboards.views.live import LiveRuns
from inspector.analysis import Analysis
from inspector.analysis.task import Target
from inspector.errors import InspectorError


def create_app(
    analysis: Analysis,
    *,
    model: nn.Module | None = None,
    data: Any = None,
    task: str | None = None,
    target: Target | None = None,
    tokenizer: Any = None,
    vocabulary: Sequence[str] | None = None,
    title: str | None = None,
    hosts: Iterable[str] | None = None,
    live: LiveRuns | None = None,
    token: str | None = None,
) -> Dash:
    """A ``dash.Dash`` showing ``analysis``.

    ``model`` and ``data`` (the evaluation data the analysis used, in any form
    :func:`inspector.analyze` accepts, with the same ``task``, ``target``, ``tokenizer``
    and ``vocabulary``) are optional: with them the dashboard also answers per-sample
    attributions and what-if questions, zooms large layers to full resolution and sorts
    their neurons by norm; without them those views say so. ``hosts`` are the ``Host``
    names it answers (default: loopback only; :func:`serve` widens it to the name it binds).
    ``token``: the secret every request must carry (default: none; :func:`serve` asks for one off loopback).
    ``live``: training runs to show in a Live tab, opened first (:func:`create_live_app`).
    """
    state = DashboardState.build(
        analysis, model, data, task=task, target=target, tokenizer=tokenizer, vocabulary=vocabulary
    )
    heading = f"dense-inspector · {analysis.model.architecture}"
    source = analysis.model.source
    if live is not None:  # the runs are the subject; the analysis is of one of their snapshots
        heading, source = f"dense-inspector · {live.title}", live.source
    app = _page(title or heading, heading, source, state, live)
    protect(app, hosts, token)
    app.state = state  # type: ignore[attr-defined]  # for tests and notebooks
    return app


def create_live_app(
    live: LiveRuns,
    analysis: Analysis | None = None,
    *,
    hosts: Iterable[str] | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> Dash:
    """The app for training runs: a Live tab, and with ``analysis`` (the newest snapshot's) every other view.

    Without an analysis (no run has written a weight snapshot yet) the Live tab is the whole app.
    ``kwargs``: :func:`create_app`'s.
    """
    if analysis is not None:
        return create_app(analysis, hosts=hosts, live=live, token=token, **kwargs)
    heading = f"dense-inspector · {live.title}"
    app = _page(heading, heading, live.source, None, live)
    protect(app, hosts, token)
    return app


def _page(title: str, heading: str, source: str, state: DashboardState | None, live: LiveRuns | None) -> Dash:
    """The app with its header and a tab per registered view shown for its subject (``state`` for the
    analysis views, ``live`` for the Live view), in the views' order; the first tab is open."""
    app = Dash(__name__, title=title, suppress_callback_exceptions=False)
    subjects = {"analysis": state, "live": live}
    shown = [view for view in views() if view.shown_for(subjects[view.needs])]
    tabs = [
        dcc.Tab(
            label=view.label,
            value=view.name,
            children=html.Div(view.layout(subjects[view.needs]), style={"padding": "12px"}),
        )
        for view in shown
    ]
    for view in shown:
        view.callbacks(app, subjects[view.needs])
    app.layout = html.Div(
        [
            html.H2(heading, style={"margin": "8px 0"}),
            html.Div(source, style={"color": "#666", "marginBottom": "8px"}),
            dcc.Tabs(id=ids.TABS, value=shown[0].name if shown else None, children=tabs),
        ],
        style={"fontFamily": "system-ui, sans-serif", "maxWidth": "1400px", "margin": "0 auto", "padding": "0 16px"},
    )
    return app


def check_port(host: str, port: int) -> None:
    """Fail with one line, before Dash starts, when ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InspectorError(f"port {port} on {host} is already in use; pass --port with a free one") from None
            raise InspectorError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port") from None


# Dash's display modes for app.run(jupyter_mode=...)
JupyterMode = Literal["inline", "external", "jupyterlab", "tab"]


def serve(
    app: Dash,
    host: str = "127.0.0.1",
    port: int = 8050,
    *,
    debug: bool = False,
    jupyter_mode: JupyterMode | None = None,
    allow_hosts: Iterable[str] = (),
    token: str | None = None,
    no_auth: bool = False,
    log: Callable[[str], None] | None = None,
) -> None:
    """Run ``app``; local-only and without the debugger unless asked.

    It answers requests addressed to loopback names, to ``host`` unless that is a
    wildcard such as 0.0.0.0, and to ``allow_hosts`` (``"*"``: any host, for a
    proxy that checks them itself). Off loopback every request must carry a token:
    ``token``, else a random one; the URL to open, token included, is printed
    (``log``: default stdout). ``no_auth`` serves off loopback without one, with a
    warning on stderr. On loopback a token is asked for only when ``token`` is given.
    """
    allow_hosts = list(allow_hosts)
    set_allowed_hosts(app, allowed_hosts(host, allow_hosts))
    token = auth_token(host, token, no_auth)
    set_token(app, token)
    if token is not None:
        hide_token_in_logs()  # the development server logs the URL of each request, ?token= included
    say = log or (lambda line: print(line, flush=True))
    if no_auth and not is_loopback(host):
        print(
            f"warning: --no-auth: anyone who can reach port {port} on {host} can use this dashboard, "
            "its model and its data",
            file=sys.stderr,
            flush=True,
        )
    others = sorted({normalise_host(h) for h in allow_hosts if h.strip()} - LOOPBACK_HOSTS)
    if token is None and not no_auth and is_loopback(host) and others:  # a proxy on this machine, most likely
        print(
            f"note: it answers {', '.join(others)} without a token; if a proxy brings others here, "
            "pass --token (or set DENSE_INSPECTOR_TOKEN)",
            file=sys.stderr,
            flush=True,
        )
    say(f"dense-inspector dashboard on {dashboard_url(host, port, token, allow_hosts)} (Ctrl+C to stop)")
    if jupyter_mode:
        app.run(jupyter_mode=jupyter_mode, host=host, port=port, debug=debug)
        return
    check_port(host, port)
    # Dash's own "Dash is running on ..." names the address without the token: the line above is the one to open
    app.logger.setLevel(logging.WARNING if token is not None else logging.INFO)
    app.run(host=host, port=port, debug=debug, use_reloader=False)

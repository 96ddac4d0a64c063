"""Placeholder: being written (issue 10)."""

from __future__ import annotations

from dash import Dash, html

from dashboards.state import DashboardState


def layout(state: DashboardState) -> html.Div:
    return html.Div("not yet available")


def register(app: Dash, state: DashboardState) -> None:
    return None

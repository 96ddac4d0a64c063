"""One module per view: ``layout(state)`` builds it, ``register(app, state)`` wires its callbacks."""

from __future__ import annotations

from typing import Any

from dash import dcc, html
from dash.development.base_component import Component
from plotly.graph_objects import Figure


def graph(component_id: str, figure: Figure, **kwargs: Any) -> dcc.Graph:
    return dcc.Graph(id=component_id, figure=figure, config={"displaylogo": False, "displayModeBar": "hover"}, **kwargs)


def row(*children: Component, widths: tuple[int, ...] | None = None) -> html.Div:
    """Side-by-side panels that wrap on narrow screens."""
    widths = widths or tuple(1 for _ in children)
    return html.Div(
        [html.Div(c, style={"flex": f"{w} 1 360px", "minWidth": 0}) for c, w in zip(children, widths)],
        style={"display": "flex", "flexWrap": "wrap", "gap": "12px"},
    )


def control(label: str, component: Component) -> html.Div:
    return html.Div(
        [html.Label(label, style={"fontWeight": 600, "marginRight": "8px"}), component],
        style={"display": "inline-block", "marginRight": "24px", "minWidth": "220px", "verticalAlign": "middle"},
    )


def note(text: str, component_id: str | None = None) -> html.P:
    kwargs: dict[str, Any] = {"id": component_id} if component_id else {}
    return html.P(text, style={"color": "#555", "margin": "6px 0"}, **kwargs)

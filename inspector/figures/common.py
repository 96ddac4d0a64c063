"""What every figure shares: the template, colours, the base layout and the empty figure."""

from __future__ import annotations

import plotly.graph_objects as go

TEMPLATE = "plotly_white"
SCOPE_LABELS = {"global": "global magnitude", "layer": "per layer", "neuron": "neurons (structured)"}
SCOPE_COLORS = {"global": "#1f77b4", "layer": "#2ca02c", "neuron": "#ff7f0e"}
COLORS = {"dead": "#d62728", "nearly": "#ff7f0e", "alive": "#2ca02c", "train": "#1f77b4", "val": "#ff7f0e"}


def _base(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        height=height,
        margin={"l": 60, "r": 20, "t": 64, "b": 50},
    )
    return fig


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A placeholder that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14, "color": "#666"}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base(fig, "", height)


# --------------------------------------------------------------------------- overview

"""What every figure shares: the template, colours, the base layout and the empty figure."""

from __future__ import annotations

import plotly.graph_objects as go

TEMPLATE = "plotly_white"
SCOPE_LABELS = {"global": "global magnitude", "layer": "per layer", "neuron": "neurons (structured)"}
SCOPE_COLORS = {"global": "#1f77b4", "layer": "#2ca02c", "neuron": "#ff7f0e"}
COLORS = {"dead": "#d62728", "nearly": "#ff7f0e", "alive": "#2ca02c", "train": "#1f77b4", "val": "#ff7f0e"}


# The mode bar (plotly's zoom/pan/save buttons) sits in the top MODEBAR_ROOM pixels of every figure, at
# the right, over whatever is there: each title starts below that band (a long title, such as the weight
# histogram's "stable rank · alpha", runs under the bar's columns), and the top margin leaves room for
# the title and, under it, the subplot titles that make_subplots puts just above the plot area.
MODEBAR_ROOM = 32  # the bar: 5 px from the top, 23 px high
TITLE_ROOM = 24  # one line of the template's 17 px title
TOP_MARGIN = MODEBAR_ROOM + TITLE_ROOM + 24  # and a line of 16 px subplot titles


def _base(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 1,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": MODEBAR_ROOM},
        },
        height=height,
        margin={"l": 60, "r": 20, "t": TOP_MARGIN, "b": 50},
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

"""One module per view, each registering itself (:func:`dashboards.registry.register_view`) with its
``layout`` and ``callbacks``; the app finds them by importing this package's modules. Below: the
components every view builds with (graphs, rows, labelled controls, the layer picker)."""

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


BLOCK_HEADER = "\u2063block:"  # header options' values start with this; no module path does (an invisible separator)


def layer_block(name: str) -> str | None:
    """The block a layer belongs to: its module path up to and including the first numeric element,
    when that element is not the last one (``bert.encoder.layer.3.intermediate.dense`` ->
    ``bert.encoder.layer.3``); ``None`` for a layer outside any block (``classifier``, ``fc1``, ``0``)."""
    parts = name.split(".")
    for k, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: k + 1])
    return None


def layer_options(names: list[str]) -> list[dict[str, Any]]:
    """Dropdown options for ``names``, grouped by block (dcc.Dropdown has no option groups).

    Without any block (an MLP) the options are the names themselves. Otherwise each block
    gets a disabled header option ("▸ encoder.layer.3 · 6 layers") followed by its layers,
    labelled by the path inside the block ("encoder.layer.3 › intermediate.dense"); layers
    outside every block keep their full name. Every option searches on the full path, so
    typing any part of a name (``layer.5.inter``) finds it.
    """
    blocks = [layer_block(name) for name in names]
    if not any(blocks):
        return [{"label": name, "value": name, "search": name} for name in names]
    members: dict[str | None, int] = {}
    for block in blocks:
        members[block] = members.get(block, 0) + 1
    options: list[dict[str, Any]] = []
    previous: str | None = None
    for name, block in zip(names, blocks):
        if block is not None and block != previous:
            count = members[block]
            options.append(
                {
                    "label": f"▸ {block} · {count} layer{'s' if count != 1 else ''}",
                    "value": BLOCK_HEADER + block + f"#{len(options)}",
                    "disabled": True,
                    "search": block,
                }
            )
        label = name if block is None else f"{block} › {name[len(block) + 1 :]}"
        options.append({"label": label, "value": name, "search": name})
        previous = block
    return options


def layer_dropdown(component_id: str, names: list[str], value: str | None = None) -> dcc.Dropdown:
    """The searchable layer picker every view uses: options grouped by block (:func:`layer_options`)."""
    longest = max((len(name) for name in names), default=10)
    return dcc.Dropdown(
        id=component_id,
        options=layer_options(names),
        value=value if value is not None else (names[0] if names else None),
        clearable=False,
        searchable=True,
        placeholder="type part of a layer name",
        style={
            "width": f"{min(560, max(220, 9 * longest + 40))}px",
            "display": "inline-block",
            "verticalAlign": "middle",
        },
    )

"""Text: a token sample highlighted by attribution, its predicted and true label, the top tokens.

Samples come from the model (the dashboard started with the model and data: any of the
probe's held samples, explained on demand) or, for a saved analysis, from the up to 16
explained samples the analysis stored. Only real tokens are shown, never padding.
"""

from __future__ import annotations

from dash import Dash, Input, Output, dcc, html

from dashboards.registry import ViewIds, register_view
from dashboards.security import choice
from dashboards.state import DashboardState
from dashboards.views import control, graph, note
from inspector import figures as F
from inspector.analysis.methods import METHOD_LABELS, lead_method
from inspector.core.adapters import adapter_for
from inspector.errors import InspectorError
from inspector.figures.text import Span

ID = ViewIds("text")  # every id below reads "text-..."
TEXT_SAMPLE = ID("sample")
TEXT_METHOD = ID("method")
TEXT_NOTE = ID("note")
TEXT_TOKENS = ID("tokens")
TEXT_TOP = ID("top-tokens")


def unavailable(state: DashboardState) -> str | None:
    """Why this analysis has no Text view, or ``None`` when it has one."""
    report = state.analysis.importance
    if report is None:
        return "The Text view shows token attributions; this analysis has none (it needs evaluation data)."
    adapter = adapter_for(report.input_kind)
    if adapter.display != "tokens":
        return f"The Text view is for token inputs; this analysis's inputs are {adapter.description}."
    return None


def uses_probe(state: DashboardState) -> bool:
    return state.probe is not None and state.probe.adapter.display == "tokens"


def sample_count(state: DashboardState) -> int:
    """How many samples can be picked: the probe's, else the stored examples."""
    if uses_probe(state):
        assert state.probe is not None
        return state.probe.n_samples
    report = state.analysis.importance
    return 0 if report is None else len(report.example_inputs)


def methods(state: DashboardState) -> list[str]:
    """The methods that ran (no error)."""
    report = state.analysis.importance
    return [m.method for m in report.methods if m.error is None] if report else []


def sample_spans(state: DashboardState, method: str, i: int) -> tuple[list[Span], str]:
    """Sample ``i``'s real tokens as ``(text, score, colour)`` spans, and a line with its labels."""
    a = state.analysis
    report = a.importance
    assert report is not None
    task = a.model.task
    if uses_probe(state):
        probe = state.probe
        assert probe is not None
        try:
            scores = probe.explain(method, i)
        except InspectorError as error:
            return [], f"Sample {i}: {error}"
        spans = F.highlighted_tokens(probe.tokens(i), scores, probe.mask(i))
        line = F.prediction_text(probe.predict(i), probe.label(i), task, a.model.class_names)
        return spans, f"Sample {i} of {probe.n_samples} ({probe.name} {probe.split} split): {line}."
    tokens, scores, mask = F.stored_example(report, report.method(method), i)
    spans = F.highlighted_tokens(tokens, scores, mask)
    labels = report.example_labels
    if labels is None:
        truth = "no true label"
    elif task == "classification":
        c = int(labels[i])
        truth = f"true {a.model.class_names[c] if 0 <= c < len(a.model.class_names) else c}"
    else:
        truth = f"true {float(labels[i]):.4g}"
    return spans, (
        f"Stored example {i} of {len(report.example_inputs)}: {truth}; the prediction needs the model "
        "(start the dashboard with the model and data to explain any sample)."
    )


def token_spans(spans: list[Span]) -> list[html.Span]:
    """Dash spans (Dash escapes the text); the attribution is each span's ``title`` (hover)."""
    return [
        html.Span(
            text,
            title=F.score_title(score),
            className="token",
            style={"background": colour, "padding": "1px 3px", "margin": "1px", "borderRadius": "3px"},
        )
        for text, score, colour in spans
    ]


def text_view(state: DashboardState, method: str, i: int) -> tuple[list[html.Span], str]:
    spans, line = state.memo(("text", method, i), lambda: sample_spans(state, method, i))
    return token_spans(spans), line


def top_figure(state: DashboardState, method: str) -> object:
    report = state.analysis.importance
    assert report is not None
    return state.memo(("text-top", method), lambda: F.top_tokens_figure(report, method))


def layout(state: DashboardState) -> html.Div:
    why = unavailable(state)
    if why is not None:
        return html.Div([note(why, TEXT_NOTE)])
    available = methods(state)
    if not available:
        return html.Div([note("No attribution method could run on this model.", TEXT_NOTE)])
    method = lead_method(available)
    assert method is not None  # available is not empty
    n = sample_count(state)
    spans, line = text_view(state, method, 0) if n else ([], "No samples to show.")
    return html.Div(
        [
            html.Div(
                [
                    control(
                        "Sample",
                        dcc.Dropdown(
                            id=TEXT_SAMPLE,
                            value=0,
                            clearable=False,
                            options=[{"label": f"sample {i}", "value": i} for i in range(n)],
                            style={"width": "160px", "display": "inline-block"},
                        ),
                    ),
                    control(
                        "Method",
                        dcc.Dropdown(
                            id=TEXT_METHOD,
                            value=method,
                            clearable=False,
                            options=[{"label": METHOD_LABELS[m], "value": m} for m in available],
                            style={"width": "240px", "display": "inline-block"},
                        ),
                    ),
                ]
            ),
            note(line, TEXT_NOTE),
            html.Div(
                spans,
                id=TEXT_TOKENS,
                style={"lineHeight": "2", "fontFamily": "ui-monospace, monospace", "margin": "8px 0"},
            ),
            note(
                "Red: the token raises the explained target, blue: lowers it; stronger colour, larger "
                "|attribution| (relative to the sample's largest). Hover a token for its value. Padding is not shown."
            ),
            graph(TEXT_TOP, top_figure(state, method)),
        ]
    )


def register(app: Dash, state: DashboardState) -> None:
    if unavailable(state) is not None or not methods(state):
        return

    @app.callback(
        Output(TEXT_TOKENS, "children"),
        Output(TEXT_NOTE, "children"),
        Input(TEXT_SAMPLE, "value"),
        Input(TEXT_METHOD, "value"),
        prevent_initial_call=True,
    )
    def update_sample(index: object, method: object):
        method = choice(method, methods(state))
        i = choice(index, list(range(sample_count(state))))
        return text_view(state, method, i)

    @app.callback(
        Output(TEXT_TOP, "figure"),
        Input(TEXT_METHOD, "value"),
        prevent_initial_call=True,
    )
    def update_top(method: object):
        return top_figure(state, choice(method, methods(state)))


register_view("text", "Text", order=60, layout=layout, callbacks=register)

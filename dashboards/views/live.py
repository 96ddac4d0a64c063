"""Live: training runs as they are recorded (a run directory, or a folder of runs side by side).

A ``dcc.Interval`` re-reads the runs every few seconds and redraws the curves, keeping the reader's
zoom (``uirevision``). For a single run directory it stops once every run shown has finished or
stopped; for a folder of runs it never stops: each tick looks for runs started since (a glob), adds
them to the run picker, and selects them too unless the reader has narrowed the selection. A run
that cannot be read (not a database) is left out with a line in the note. Reads are cheap when
nothing changed: a run is read again only when its database or write-ahead log changed on disk.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate
from safetensors import safe_open

from dashboards.registry import ViewIds, register_view
from dashboards.security import choice, flags
from dashboards.views import control, graph, layer_dropdown, layer_options, row
from inspector import figures as F
from inspector.analysis.weights import LayerWeights, layer_weights
from inspector.errors import InspectorError
from inspector.figures.live import LIVE_STATISTICS, default_statistic
from inspector.fileio import process_alive
from inspector.live.store import RUN_FILE, RunHistory, Snapshot, find_runs, read_run

ID = ViewIds("live")  # every id below reads "live-..."
LIVE_STATUS = ID("status")
LIVE_RUNS = ID("runs")
LIVE_STAT = ID("statistic")
LIVE_LAYERS = ID("layers")
LIVE_CURVES = ID("curves")
LIVE_LOSS = ID("loss")
LIVE_GRADS = ID("grads")
LIVE_WARNINGS = ID("warnings")
LIVE_INTERVAL = ID("interval")
LIVE_SEEN = ID("seen")
LIVE_SNAPSHOT_LAYER = ID("snapshot-layer")
LIVE_SNAPSHOT = ID("snapshot")
LIVE_SNAPSHOT_SEEN = ID("snapshot-seen")
LIVE_NOTE = ID("note")

WARNINGS_SHOWN = 200  # newest first; older ones are in the run's report


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class LiveRuns:
    """The runs a Live view shows, read on demand and cached until their files change.

    ``paths``: run directories; ``root``: the folder they were found in (labels are the paths relative
    to it, so ``sweep/lr-0.1`` and ``other/lr-0.1`` stay apart). ``refresh``: seconds between re-reads.
    ``watch``: ``root`` is a folder of runs that :meth:`rescan` searches again for runs started later
    (and the view keeps polling for them).
    """

    def __init__(
        self, paths: Sequence[Path], root: Path | None = None, refresh: float = 2.0, *, watch: bool = False
    ) -> None:
        self.root = root
        self.watch = watch and root is not None
        self.refresh = refresh
        self._lock = threading.Lock()
        self._set_paths(paths)
        count = f"{len(self.paths)} run{'s' if len(self.paths) != 1 else ''}"
        if self.watch:
            self.title = f"runs in {Path(str(root)).resolve().name}"
            self.source = f"{count} in {root} at launch (runs started later appear too)"
        else:
            self.title = f"{self.labels[0]} (training run)" if len(self.paths) == 1 else f"{count} side by side"
            self.source = str(self.paths[0]) if len(self.paths) == 1 else f"{count} in {root or self.paths[0].parent}"
        self._cache: dict[str, tuple[tuple[object, ...], RunHistory]] = {}
        self._errors: dict[str, tuple[tuple[object, ...], str]] = {}  # label -> (file state, why unreadable)
        self._layers: dict[tuple[str, str, int], LayerWeights | None] = {}
        self.note = ""  # the Live tab's note, before the lines on unreadable runs

    def _label(self, path: Path) -> str:
        root = self.root
        return str(path.relative_to(root)) if root is not None and path != root else path.resolve().name

    def _set_paths(self, paths: Sequence[Path]) -> None:
        paths = [Path(p) for p in paths]
        labels = [self._label(p) for p in paths]
        with self._lock:
            self.paths, self.labels = paths, labels
            self._where = dict(zip(labels, paths, strict=True))

    def rescan(self) -> list[str]:
        """Look for runs started since (a folder of runs only); the labels of the new ones."""
        if not self.watch or self.root is None:
            return []
        found = find_runs(self.root)
        new = [p for p in found if self._label(p) not in self._where]
        if new:
            self._set_paths(sorted([*self.paths, *new], key=self._label))
        return [self._label(p) for p in new]

    def read(self, label: str) -> RunHistory:
        """The run ``label`` now; the cached copy while its database and log are unchanged (and, for a
        running run, its writer still alive: a killed writer changes no file but makes it stopped).
        ``InspectorError`` when it cannot be read (the reason is kept for :meth:`unreadable`)."""
        with self._lock:
            path = self._where[label]
        db = path / RUN_FILE
        key = (_file_state(db), _file_state(Path(f"{db}-wal")))
        with self._lock:
            cached = self._cache.get(label)
            error = self._errors.get(label)
        if error is not None and error[0] == key:
            raise InspectorError(error[1])
        if cached is not None and cached[0] == key:
            history = cached[1]
            pid = history.meta.get("pid")
            if not history.running or not isinstance(pid, int) or process_alive(pid):
                return history
        try:
            history = dataclasses.replace(read_run(path, vectors=False), name=label)  # scalars only
        except InspectorError as exc:
            with self._lock:
                self._errors[label] = (key, str(exc))
            raise
        with self._lock:
            self._cache[label] = (key, history)
            self._errors.pop(label, None)
        return history

    def unreadable(self) -> dict[str, str]:
        """The runs the last reads could not read: label -> why."""
        with self._lock:
            return {label: why for label, (_, why) in self._errors.items()}

    def read_many(self, labels: Sequence[str]) -> list[RunHistory]:
        """The runs ``labels`` that can be read, in the picker's order (the others are :meth:`unreadable`)."""
        runs = []
        for label in self.labels:
            if label in labels:
                try:
                    runs.append(self.read(label))
                except InspectorError:
                    continue
        return runs

    def snapshot_layer(self, label: str, snapshot: Snapshot, layer: str) -> LayerWeights | None:
        """``layer``'s weight statistics in ``snapshot`` (``None`` when the file holds no 2-D weight for it)."""
        key = (label, layer, snapshot.step)
        with self._lock:
            if key in self._layers:
                return self._layers[key]
        weights = read_snapshot_layer(snapshot.path, layer)
        with self._lock:
            if len(self._layers) > 64:  # old steps are never shown again
                self._layers.clear()
            self._layers[key] = weights
        return weights


def read_snapshot_layer(path: str | os.PathLike[str], layer: str) -> LayerWeights | None:
    """``layer.weight`` (and its bias) from a snapshot's safetensors file, summarised; ``None`` if absent."""
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        weight_key = f"{layer}.weight" if f"{layer}.weight" in keys else layer
        if weight_key not in keys:
            return None
        weight = f.get_tensor(weight_key)
        if weight.dim() != 2:
            return None
        bias = f.get_tensor(f"{layer}.bias") if f"{layer}.bias" in keys else None
    return layer_weights(layer, weight, bias)


def all_layers(runs: Sequence[RunHistory]) -> list[str]:
    """Every layer of ``runs``, in model order, first run first."""
    seen: dict[str, None] = {}
    for run in runs:
        for layer in run.layers:
            seen.setdefault(layer, None)
    return list(seen)


def warnings_table(runs: Sequence[RunHistory]) -> html.Div:
    rows = F.warning_rows(runs, WARNINGS_SHOWN)
    if not rows:
        return html.Div(html.P("No warnings so far.", style={"color": "#555"}))
    cell = {"border": "1px solid #ddd", "padding": "3px 8px", "textAlign": "left"}
    head = html.Tr([html.Th(k, style=cell) for k in rows[0]])
    body = [
        html.Tr(
            [html.Td(str(v), style=cell) for v in r.values()],
            style={"color": "#b30000" if r["severity"] == "warning" else "inherit"},
        )
        for r in rows
    ]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], style={"borderCollapse": "collapse"}))


def status_lines(runs: Sequence[RunHistory]) -> list[html.Div]:
    return [html.Div(F.status_text(run)) for run in runs]


def _snapshot_figure(live: LiveRuns, runs: Sequence[RunHistory], layer: str | None):
    if not runs:
        return F.empty_figure("no run selected: pick one or more runs"), None
    run = runs[0]
    snapshot = run.latest_snapshot
    if snapshot is None or layer is None:
        return F.snapshot_weights_figure(run, None, layer or ""), None
    weights = live.snapshot_layer(run.name, snapshot, layer)
    return F.snapshot_weights_figure(run, weights, layer), [run.name, layer, snapshot.step]


def note_text(live: LiveRuns, base: str) -> str:
    """``base``, then one line per run that cannot be read (left out of the view)."""
    skipped = [f"skipped {label}: {why}" for label, why in sorted(live.unreadable().items())]
    return "\n".join([base, *skipped])


def polling_off(live: LiveRuns, runs: Sequence[RunHistory]) -> bool:
    """Whether the view stops polling: never for a folder of runs (a new one may start any time)."""
    return not live.watch and not any(run.running for run in runs)


def layout(live: LiveRuns) -> html.Div:
    runs = live.read_many(live.labels)
    layers = all_layers(runs)
    first = runs[0] if runs else None
    live.note = (
        f"The other views show {first.name}'s weights at step {first.latest_snapshot.step} (its newest snapshot, "
        "weights only)."
        if first is not None and first.latest_snapshot is not None
        else f"{first.name if first else 'The run'} has no weight snapshot yet: the other views need one "
        "(Monitor(snapshot_every=...))."
    )
    snapshot_fig, _ = _snapshot_figure(live, runs, layers[0] if layers else None)
    shown = [run.name for run in runs]
    statistic = default_statistic(runs)  # the one the runs' units record: a GELU has no dead fraction
    return html.Div(
        [
            html.Div(status_lines(runs), id=LIVE_STATUS, style={"fontFamily": "monospace", "margin": "4px 0"}),
            html.P(
                note_text(live, live.note),
                id=LIVE_NOTE,
                style={"color": "#555", "margin": "6px 0", "whiteSpace": "pre-line"},
            ),
            control(
                "Runs",
                dcc.Dropdown(
                    id=LIVE_RUNS,
                    options=[{"label": label, "value": label} for label in shown],
                    value=shown,
                    multi=True,
                    style={"minWidth": "320px"},
                ),
            ),
            control(
                "Statistic",
                dcc.Dropdown(
                    id=LIVE_STAT,
                    options=[{"label": label, "value": name} for name, (label, _) in LIVE_STATISTICS.items()],
                    value=statistic,
                    clearable=False,
                    style={"width": "220px"},
                ),
            ),
            control(
                "Layers",
                dcc.Dropdown(
                    id=LIVE_LAYERS,
                    options=layer_options(layers),
                    value=None,  # None: every layer, including those a starting run declares later
                    multi=True,
                    searchable=True,
                    placeholder="every layer (type part of a name to pick some)",
                    style={"minWidth": "360px"},
                ),
            ),
            # the picked statistic beside the gradient norms, always in view
            row(
                graph(LIVE_CURVES, F.live_curves_figure(runs, statistic)),
                graph(LIVE_GRADS, F.live_curves_figure(runs, "grad_norm")),
            ),
            row(
                graph(LIVE_LOSS, F.loss_lr_figure(runs)),
                html.Div([html.H4("Warnings, newest first"), html.Div(warnings_table(runs), id=LIVE_WARNINGS)]),
            ),
            html.Div(
                [
                    control("Snapshot layer", layer_dropdown(LIVE_SNAPSHOT_LAYER, layers)),
                    graph(LIVE_SNAPSHOT, snapshot_fig),
                ]
            ),
            dcc.Interval(
                id=LIVE_INTERVAL,
                interval=int(live.refresh * 1000),
                disabled=polling_off(live, runs),  # a finished run opens as a whole
            ),
            dcc.Store(id=LIVE_SEEN),
            dcc.Store(id=LIVE_SNAPSHOT_SEEN),
        ]
    )


def _shown(live: LiveRuns, value: object) -> list[RunHistory]:
    return live.read_many(sorted(flags(value, live.labels)))


def refresh(
    live: LiveRuns,
    run_value: object,
    statistic: object,
    layer_value: object,
    seen: object = None,
    *,
    tick: bool = False,
) -> tuple[object, ...]:
    """The Live view's outputs (status lines, curves, loss, warnings, interval disabled, layer options,
    the key of what was drawn, gradient norms); ``PreventUpdate`` on a ``tick`` that finds nothing
    changed since ``seen``."""
    runs = _shown(live, run_value)
    statistic = choice(statistic, LIVE_STATISTICS)
    names = all_layers(live.read_many(live.labels))
    layers = None if layer_value is None else sorted(flags(layer_value, names))
    # what the figures depend on: an unchanged run (same steps, events, status) is not redrawn
    key = [statistic, layers, [[r.name, r.last_step, len(r.events), r.status, len(r.layers)] for r in runs]]
    if tick and seen == key:
        raise PreventUpdate
    return (
        status_lines(runs),
        F.live_curves_figure(runs, statistic, layers),
        F.loss_lr_figure(runs),
        warnings_table(runs),
        polling_off(live, runs),
        layer_options(names),
        key,
        F.live_curves_figure(runs, "grad_norm", layers),
    )


def refresh_snapshot(live: LiveRuns, run_value: object, layer_value: object, seen: object = None) -> tuple[object, ...]:
    """The snapshot heatmap of the first shown run's newest snapshot, its key, and the layer options;
    ``no_update`` while the same (run, layer, step) is already drawn."""
    runs = _shown(live, run_value)
    names = all_layers(live.read_many(live.labels))
    layer = layer_value if isinstance(layer_value, str) and layer_value in names else None
    if layer is None and names:
        layer = names[0]  # a run that declared its layers after the page opened
    figure, key = _snapshot_figure(live, runs, layer)
    if key is not None and key == seen:
        return no_update, no_update, no_update
    return figure, key, layer_options(names)


def refresh_runs(live: LiveRuns, run_value: object, options: object, shown_note: object) -> tuple[object, ...]:
    """The run picker's options and value, and the note, after looking for new runs (a folder of runs).

    A run that became readable since the page last drew the picker (a new run, or one not yet written
    when last looked at) is added to its options, and selected too unless the reader has narrowed the
    selection (deselected a run it offered). ``PreventUpdate`` when nothing changed.
    """
    live.rescan()
    readable = [run.name for run in live.read_many(live.labels)]
    before = [o.get("value") for o in options if isinstance(o, dict)] if isinstance(options, list) else []
    value = sorted(flags(run_value, live.labels))
    text = note_text(live, live.note)
    if readable == before and text == shown_note:
        raise PreventUpdate
    new = [label for label in readable if label not in before]
    if set(before) <= set(value):  # everything offered is selected: so are the new ones
        value = [label for label in readable if label in value or label in new]
    else:
        value = [label for label in readable if label in value]
    return [{"label": label, "value": label} for label in readable], value, text


def register(app: Dash, live: LiveRuns) -> None:
    @app.callback(
        Output(LIVE_STATUS, "children"),
        Output(LIVE_CURVES, "figure"),
        Output(LIVE_LOSS, "figure"),
        Output(LIVE_WARNINGS, "children"),
        Output(LIVE_INTERVAL, "disabled"),
        Output(LIVE_LAYERS, "options"),
        Output(LIVE_SEEN, "data"),
        Output(LIVE_GRADS, "figure"),
        Input(LIVE_INTERVAL, "n_intervals"),
        Input(LIVE_RUNS, "value"),
        Input(LIVE_STAT, "value"),
        Input(LIVE_LAYERS, "value"),
        State(LIVE_SEEN, "data"),
        prevent_initial_call=True,
    )
    def update(_ticks: object, run_value: object, statistic: object, layer_value: object, seen: object):
        tick = callback_context.triggered_id == LIVE_INTERVAL
        return refresh(live, run_value, statistic, layer_value, seen, tick=tick)

    @app.callback(
        Output(LIVE_RUNS, "options"),
        Output(LIVE_RUNS, "value"),
        Output(LIVE_NOTE, "children"),
        Input(LIVE_INTERVAL, "n_intervals"),
        State(LIVE_RUNS, "value"),
        State(LIVE_RUNS, "options"),
        State(LIVE_NOTE, "children"),
        prevent_initial_call=True,
    )
    def update_runs(_ticks: object, run_value: object, options: object, shown_note: object):
        return refresh_runs(live, run_value, options, shown_note)

    @app.callback(
        Output(LIVE_SNAPSHOT, "figure"),
        Output(LIVE_SNAPSHOT_SEEN, "data"),
        Output(LIVE_SNAPSHOT_LAYER, "options"),
        Input(LIVE_INTERVAL, "n_intervals"),
        Input(LIVE_RUNS, "value"),
        Input(LIVE_SNAPSHOT_LAYER, "value"),
        State(LIVE_SNAPSHOT_SEEN, "data"),
        prevent_initial_call=True,
    )
    def update_snapshot(_ticks: object, run_value: object, layer_value: object, seen: object):
        return refresh_snapshot(live, run_value, layer_value, seen)


register_view("live", "Live", order=0, layout=layout, callbacks=register, needs="live")

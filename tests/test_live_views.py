"""The Live view, its figures and the run's report, without a browser: runs written with RunWriter."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import plotly.io as pio
import pytest
import torch
from dash.exceptions import PreventUpdate

from dashboards import ids
from dashboards.launch import app_for_runs
from dashboards.views import live as view
from inspector import figures as F
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.figures.live import LIVE_STATISTICS, default_statistic
from inspector.live.store import RunWriter, find_runs, read_run
from inspector.report import run_sections

LAYERS = ("fc1", "fc2", "fc3")
STEPS = (50, 100, 150, 200)


def dead_fraction(run: int, layer: int, step: int) -> float:
    """The planted value: distinct for every (run, layer, step)."""
    return (run + 1) * 0.01 + (layer + 1) * 0.1 + step / 1000


def grad_norm(run: int, layer: int, step: int) -> float:
    return 10.0 ** -(layer + 1) * (step + run)


def write(path, run: int = 0, steps=STEPS, *, close: bool = True, events=None, layers=LAYERS) -> RunWriter:
    writer = RunWriter(path, meta={"source": "test"})
    writer.set_layers([(name, 4, 3, "relu") for name in layers])
    for step in steps:
        scalars = {("loss", ""): 1.0 / step, ("lr", ""): 0.1 / (1 + run)}
        for i, name in enumerate(layers):
            scalars[("dead_fraction", name)] = dead_fraction(run, i, step)
            scalars[("grad_norm", name)] = grad_norm(run, i, step)
            scalars[("saturation", name)] = float("nan")  # ReLU: not measurable
        writer.record(step, scalars, events=(events or {}).get(step, ()))
    if close:
        writer.close()
    return writer


def test_curves_carry_each_run_and_layers_steps_and_values(tmp_path):
    write(tmp_path / "a", 0)
    write(tmp_path / "b", 1, steps=STEPS[:2])
    runs = [read_run(tmp_path / "a"), read_run(tmp_path / "b")]
    fig = F.live_curves_figure(runs, "dead_fraction")
    assert [t.name for t in fig.data] == [f"{r} · {layer}" for r in ("a", "b") for layer in LAYERS]
    for trace in fig.data:
        run_name, layer = trace.name.split(" · ")
        r, i = "ab".index(run_name), LAYERS.index(layer)
        steps = STEPS if r == 0 else STEPS[:2]
        np.testing.assert_array_equal(trace.x, steps)
        np.testing.assert_allclose(trace.y, [dead_fraction(r, i, s) for s in steps], rtol=0, atol=1e-12)
    assert fig.layout.uirevision == "dead_fraction" and fig.layout.yaxis.type == "linear"
    one = F.live_curves_figure(runs[:1], "grad_norm", ["fc2"])  # one run: traces named by layer
    assert [t.name for t in one.data] == ["fc2"] and one.layout.yaxis.type == "log"
    np.testing.assert_allclose(one.data[0].y, [grad_norm(0, 1, s) for s in STEPS], rtol=1e-12)


def test_figures_with_nothing_to_draw_say_why(tmp_path):
    write(tmp_path / "a")
    run = read_run(tmp_path / "a")
    cases = {
        "no run selected": F.live_curves_figure([], "dead_fraction"),
        "no layer selected": F.live_curves_figure([run], "dead_fraction", []),
        "no saturation recorded": F.live_curves_figure([run], "saturation"),  # all NaN for ReLU layers
        "no weight snapshot yet": F.snapshot_weights_figure(run, None),
    }
    RunWriter(tmp_path / "empty").close()
    cases["no records yet"] = F.live_curves_figure([read_run(tmp_path / "empty")], "dead_fraction")
    cases["no loss or learning rate"] = F.loss_lr_figure([read_run(tmp_path / "empty")])
    for reason, fig in cases.items():
        assert not fig.data and reason in fig.layout.annotations[0].text, reason


def test_loss_on_the_left_axis_and_learning_rate_on_the_right(tmp_path):
    write(tmp_path / "a")
    fig = F.loss_lr_figure([read_run(tmp_path / "a")])
    loss, lr = fig.data
    assert (loss.name, loss.yaxis, lr.name, lr.yaxis) == ("loss", "y", "learning rate", "y2")
    np.testing.assert_allclose(loss.y, [1.0 / s for s in STEPS], rtol=1e-12)
    np.testing.assert_allclose(lr.y, [0.1] * len(STEPS), rtol=1e-12)


def test_status_line_follows_the_writer(tmp_path):
    writer = write(tmp_path / "exp1", close=False)
    assert F.status_text(read_run(tmp_path / "exp1")) == "exp1: step 200, running"
    writer.record(600, {("loss", ""): 0.5})
    assert F.status_text(read_run(tmp_path / "exp1")) == "exp1: step 600, running"
    writer.close()
    assert F.status_text(read_run(tmp_path / "exp1")) == "exp1: step 600, finished"
    RunWriter(tmp_path / "new")  # never closed, never recorded: its writer (this process) is alive
    assert F.status_text(read_run(tmp_path / "new")) == "new: no records yet, running"


def test_warnings_newest_first_with_step_and_layer(tmp_path):
    events = {50: [("warning", "fc1", "fc1: first")], 150: [("warning", "", "loss is NaN"), ("info", "fc2", "second")]}
    write(tmp_path / "a", events=events)
    write(tmp_path / "b", 1, events={100: [("warning", "fc3", "other run")]})
    rows = F.warning_rows([read_run(tmp_path / "a"), read_run(tmp_path / "b")])
    assert [(r["run"], r["step"], r["layer"], r["message"]) for r in rows] == [
        ("a", 150, "fc2", "second"),  # same step: the later one first
        ("a", 150, "(model)", "loss is NaN"),
        ("b", 100, "fc3", "other run"),
        ("a", 50, "fc1", "fc1: first"),
    ]
    table = view.warnings_table([read_run(tmp_path / "a")])
    assert "loss is NaN" in str(table) and "fc1: first" in str(table)


def test_refresh_reads_again_only_what_changed_and_stops_when_all_finished(tmp_path):
    (tmp_path / "runs").mkdir()
    running = write(tmp_path / "runs" / "a", close=False)
    write(tmp_path / "runs" / "b", 1)
    live = view.LiveRuns(find_runs(tmp_path / "runs"), tmp_path / "runs")
    assert live.labels == ["a", "b"]
    status, curves, _, _, disabled, options, key, grads = view.refresh(live, ["a", "b"], "dead_fraction", None)
    # the gradient norms are drawn beside the picked statistic, per (run, layer)
    assert grads.layout.yaxis.type == "log" and len(grads.data) == len(curves.data)
    assert [s.children for s in status] == ["a: step 200, running", "b: step 200, finished"]
    assert len(curves.data) == 2 * len(LAYERS) and disabled is False
    assert [o["value"] for o in options] == list(LAYERS)
    assert live.read("a") is live.read("a")  # nothing changed on disk: the cached history
    with pytest.raises(PreventUpdate):  # a tick that finds nothing new redraws nothing
        view.refresh(live, ["a", "b"], "dead_fraction", None, json.loads(json.dumps(key)), tick=True)
    running.record(250, {("dead_fraction", "fc1"): 0.75})
    status, curves, *_ = view.refresh(live, ["a", "b"], "dead_fraction", ["fc1"], key, tick=True)
    assert status[0].children == "a: step 250, running"
    assert list(curves.data[0].x) == [*STEPS, 250] and curves.data[0].y[-1] == 0.75
    assert view.refresh(live, ["b"], "dead_fraction", None)[4] is True  # only finished runs shown: no polling
    running.close()
    assert view.refresh(live, ["a", "b"], "dead_fraction", None)[4] is True
    with pytest.raises(PreventUpdate):  # a run the page never offered
        view.refresh(live, ["a", "../elsewhere"], "dead_fraction", None)


def test_a_finished_run_opens_as_a_whole_without_polling(tmp_path):
    write(tmp_path / "exp1")
    app = app_for_runs(tmp_path / "exp1", log=lambda _: None)
    interval = _find(app.layout, view.LIVE_INTERVAL)
    assert interval.disabled is True and interval.interval == 2000
    assert _find(app.layout, ids.TABS).value == "live"
    assert [t.value for t in _find(app.layout, ids.TABS).children] == ["live"]  # no snapshot: no other views
    assert "no weight snapshot yet" in _find(app.layout, view.LIVE_NOTE).children
    figure = _find(app.layout, view.LIVE_SNAPSHOT).figure
    assert "exp1 has no weight snapshot yet" in figure.layout.annotations[0].text


def _find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and hasattr(child, "to_plotly_json"):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


def test_snapshot_heatmap_shows_the_newest_snapshot_and_the_other_views_analyse_it(tmp_path):
    writer = write(tmp_path / "exp1", close=False)
    torch.manual_seed(0)
    first = {f"{name}.weight": torch.randn(3, 4) for name in LAYERS} | {"fc1.bias": torch.randn(3)}
    writer.snapshot(100, first)
    app = app_for_runs(tmp_path / "exp1", refresh=0.5, log=lambda _: None)
    tabs = [t.value for t in _find(app.layout, ids.TABS).children]
    assert tabs[0] == "live" and "weights" in tabs and "overview" in tabs
    assert _find(app.layout, view.LIVE_INTERVAL).interval == 500
    assert app.state.analysis.weights[0].layer == "fc1"  # the weight-only analysis of the snapshot
    np.testing.assert_allclose(app.state.analysis.weights[0].values, first["fc1.weight"].numpy())
    live = view.LiveRuns([tmp_path / "exp1"])
    figure, key, _ = view.refresh_snapshot(live, ["exp1"], "fc2")
    assert key == ["exp1", "fc2", 100] and "weights at step 100" in figure.layout.title.text
    np.testing.assert_allclose(figure.data[0].z, first["fc2.weight"].numpy())
    assert view.refresh_snapshot(live, ["exp1"], "fc2", key)[0] is view.no_update  # same snapshot: not redrawn
    second = {name: t * 2 for name, t in first.items()}
    writer.snapshot(200, second)  # follows new snapshots
    figure, key, _ = view.refresh_snapshot(live, ["exp1"], "fc2", key)
    assert key == ["exp1", "fc2", 200] and "weights at step 200" in figure.layout.title.text
    np.testing.assert_allclose(figure.data[0].z, second["fc2.weight"].numpy())
    figure, key, _ = view.refresh_snapshot(live, ["exp1"], "nothing")  # a name not offered: the first layer
    assert key == ["exp1", "fc1", 200]
    writer.close()


def test_dashboard_command_opens_runs_and_refuses_other_folders(tmp_path, monkeypatch, capsys):
    import dashboards.app

    (tmp_path / "runs" / "sweep").mkdir(parents=True)
    write(tmp_path / "runs" / "exp1")
    write(tmp_path / "runs" / "sweep" / "lr-0.1", 1)
    served = []
    monkeypatch.setattr(dashboards.app, "serve", lambda app, *a, **k: served.append(app))
    monkeypatch.setattr(dashboards.app, "check_port", lambda *a: None)
    assert main(["dashboard", str(tmp_path / "runs"), "--refresh", "5"]) == 0
    runs = _find(served[0].layout, view.LIVE_RUNS)
    assert runs.value == ["exp1", "sweep/lr-0.1"]  # every run, by default
    # a folder of runs keeps polling though every run has finished: a new run may start any time
    assert _find(served[0].layout, view.LIVE_INTERVAL).disabled is False
    assert "2 runs in" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()
    assert main(["dashboard", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no training run, analysis or sharded checkpoint" in err[0]
    assert "a run directory (run.sqlite) or a folder of runs" in err[0]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InspectorError):
        app_for_runs(tmp_path / "bad", log=lambda _: None)
    assert main(["dashboard", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inspector: error: cannot read the run in")


def _embedded_arrays(html_text: str) -> list[np.ndarray]:
    """Every typed array (Plotly's ``{"dtype": ..., "bdata": base64}``) embedded in the report."""
    out = []
    for dtype, data in re.findall(r'"dtype":"(\w+)","bdata":"((?:[A-Za-z0-9+=]|\\u002f)+)"', html_text):
        out.append(np.frombuffer(base64.b64decode(data.replace("\\u002f", "/")), dtype=np.dtype(dtype)))
    return out


def test_report_of_a_run_holds_its_curves_escaped_warnings_and_the_snapshots_analysis(tmp_path, capsys):
    events = {150: [("warning", "fc2", "fc2: <script>alert(1)</script> died")]}
    writer = write(tmp_path / "exp1", events=events, close=False)
    writer.snapshot(200, {f"{name}.weight": torch.full((3, 4), 0.5) for name in LAYERS})
    writer.close()
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "exp1"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Training run" in text and 'id="weights"' in text  # the run section, then the snapshot's analysis
    arrays = _embedded_arrays(text)
    for i in range(len(LAYERS)):  # the dead-fraction and gradient-norm curves, values as drawn
        for planted in (dead_fraction, grad_norm):
            expected = np.array([planted(0, i, s) for s in STEPS])
            assert any(a.shape == expected.shape and np.allclose(a, expected, rtol=1e-12) for a in arrays), planted
    loss = np.array([1.0 / s for s in STEPS])
    assert any(a.shape == loss.shape and np.allclose(a, loss, rtol=1e-12) for a in arrays)
    figures = [b for b in run_sections([read_run(tmp_path / "exp1")])[0].blocks if not isinstance(b, str)]
    assert [f.layout.title.text for f in figures] == [
        "dead fraction per layer over training steps",
        "gradient norm per layer over training steps",
        "loss and learning rate over training steps",
    ]
    assert pio.to_json(figures[0])  # plain plotly figures
    capsys.readouterr()
    assert main(["report", str(tmp_path / "exp1"), "-o", str(tmp_path / "r.md")]) == 1
    assert "a run's report is HTML or PDF" in capsys.readouterr().err


def test_the_live_view_reads_scalars_without_the_per_neuron_vectors(tmp_path):
    writer = RunWriter(tmp_path / "exp1")
    writer.set_layers([("fc1", 4, 3, "relu")])
    writer.record(10, {("dead_fraction", "fc1"): 1 / 3}, vectors={("fire_rate", "fc1"): np.array([0.0, 0.5, 1.0])})
    writer.close()
    whole = read_run(tmp_path / "exp1")
    np.testing.assert_array_equal(whole.vector("fire_rate", "fc1")[1], [[0.0, 0.5, 1.0]])
    scalars_only = view.LiveRuns([tmp_path / "exp1"]).read("exp1")
    assert scalars_only.vectors == {} and scalars_only.vector("fire_rate", "fc1")[1].size == 0
    assert scalars_only.series == whole.series and scalars_only.steps.tolist() == [10]


def test_report_of_a_folder_of_runs_draws_them_side_by_side(tmp_path):
    (tmp_path / "runs").mkdir()
    write(tmp_path / "runs" / "a", 0)
    write(tmp_path / "runs" / "b", 1)
    out = tmp_path / "runs.html"
    assert main(["report", str(tmp_path / "runs"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "Training runs (2)" in text and "has no weight snapshot, so the report has no weight analysis" in text
    arrays = _embedded_arrays(text)
    for r in (0, 1):
        expected = np.array([dead_fraction(r, 2, s) for s in STEPS])
        assert any(a.shape == expected.shape and np.allclose(a, expected, rtol=1e-12) for a in arrays)


def test_a_folder_of_runs_is_searched_again_on_each_tick_and_keeps_polling(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    write(root / "a", 0)
    write(root / "b", 1)
    app = app_for_runs(root, log=lambda _: None)
    assert _find(app.layout, view.LIVE_INTERVAL).disabled is False  # every run finished, yet it polls
    live = view.LiveRuns(find_runs(root), root, watch=True)
    options = [{"label": label, "value": label} for label in ("a", "b")]
    note = view.note_text(live, live.note)
    with pytest.raises(PreventUpdate):  # nothing new
        view.refresh_runs(live, ["a", "b"], options, note)
    (root / "sweep").mkdir()
    write(root / "sweep" / "c", 2, close=False)  # started after launch, two levels down
    options, value, _ = view.refresh_runs(live, ["a", "b"], options, note)
    assert [o["value"] for o in options] == ["a", "b", "sweep/c"]
    assert value == ["a", "b", "sweep/c"]  # everything was selected: so is the new run
    status, curves, *_ = view.refresh(live, value, "dead_fraction", None)
    assert status[2].children == "sweep/c: step 200, running" and len(curves.data) == 3 * len(LAYERS)
    np.testing.assert_allclose(curves.data[-1].y, [dead_fraction(2, 2, s) for s in STEPS], rtol=1e-12)
    write(root / "d", 3)
    options, value, _ = view.refresh_runs(live, ["b"], options, note)  # the reader narrowed it to b
    assert [o["value"] for o in options] == ["a", "b", "d", "sweep/c"] and value == ["b"]
    assert view.refresh(live, ["a", "b", "d"], "dead_fraction", None)[4] is False  # all finished: still polls
    single = view.LiveRuns([root / "a"])  # a run directory: no search, polling stops once it has finished
    assert single.rescan() == [] and view.refresh(single, ["a"], "dead_fraction", None)[4] is True


def _corrupt(path) -> None:
    path.mkdir(parents=True)
    (path / "run.sqlite").write_bytes(np.random.default_rng(0).bytes(8192))


def test_an_unreadable_run_of_a_folder_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    import dashboards.app

    root = tmp_path / "runs"
    root.mkdir()
    write(root / "a", 0)
    _corrupt(root / "bad")
    out = tmp_path / "report.html"
    assert main(["report", str(root), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inspector: note: skipped") and "bad" in err[0], err
    assert "file is not a database" in err[0]
    arrays = _embedded_arrays(out.read_text())
    expected = np.array([dead_fraction(0, 0, s) for s in STEPS])
    assert any(a.shape == expected.shape and np.allclose(a, expected, rtol=1e-12) for a in arrays)
    served = []
    monkeypatch.setattr(dashboards.app, "serve", lambda app, *a, **k: served.append(app))
    monkeypatch.setattr(dashboards.app, "check_port", lambda *a: None)
    assert main(["dashboard", str(root)]) == 0
    err = capsys.readouterr().err
    assert "inspector: note: skipped bad: " in err and "1 run in" in err
    assert [o["value"] for o in _find(served[0].layout, view.LIVE_RUNS).options] == ["a"]
    note = _find(served[0].layout, view.LIVE_NOTE).children
    assert note.splitlines()[1].startswith("skipped bad: cannot read the run in") and len(note.splitlines()) == 2
    _corrupt(root / "worse")
    live = view.LiveRuns(find_runs(root), root, watch=True)
    assert [r.name for r in live.read_many(live.labels)] == ["a"] and sorted(live.unreadable()) == ["bad", "worse"]
    (root / "a" / "run.sqlite").write_bytes(b"now broken too" * 512)
    for command in (["report", str(root), "-o", str(tmp_path / "none.html")], ["dashboard", str(root)]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("inspector: error: none of the 3 runs in"), err
        assert err[0].endswith("can be read (not run databases)")


def test_report_draws_saturation_and_zero_rate_that_a_monitor_recorded(tmp_path):
    import sqlite3

    import inspector

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.Sigmoid(),
        torch.nn.Linear(16, 16),
        torch.nn.GELU(),
        torch.nn.Linear(16, 2),
    )
    with torch.no_grad():
        model[2].weight.mul_(20)  # large inputs to the sigmoid: some of it saturates
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    X = torch.randn(64, 8) * 3
    y = (X[:, 0] > 0).long()
    run = tmp_path / "squash"
    with inspector.Monitor(model, run, every=2, optimizer=optimizer) as monitor:
        for _ in range(6):
            loss = torch.nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    out = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    text = out.read_text()
    figures = [b for b in run_sections([read_run(run)])[0].blocks if not isinstance(b, str)]
    assert [f.layout.title.text for f in figures] == [  # no ReLU: no dead-fraction figure
        "saturation per layer over training steps",
        "zero rate per layer over training steps",
        "gradient norm per layer over training steps",
        "loss and learning rate over training steps",
    ]
    assert "no dead fraction recorded" not in text
    drawn = {fig.layout.title.text.split(" per ")[0]: {t.name: np.asarray(t.y) for t in fig.data} for fig in figures}
    assert sorted(drawn["saturation"]) == ["0", "2"] and sorted(drawn["zero rate"]) == ["4"]
    arrays = _embedded_arrays(text)
    with sqlite3.connect(run / "run.sqlite") as conn:
        for name, layers in (("saturation", ["0", "2"]), ("zero_rate", ["4"]), ("grad_norm", ["0", "2", "4", "6"])):
            for layer in layers:
                stored = conn.execute(
                    "SELECT step, value FROM scalars WHERE name = ? AND layer = ? ORDER BY step", (name, layer)
                ).fetchall()
                assert [s for s, _ in stored] == [2, 4, 6]
                values = np.array([v for _, v in stored], dtype=np.float64)
                assert np.isfinite(values).all() and (values > 0).all(), (name, layer)
                assert any(a.shape == values.shape and np.array_equal(a, values) for a in arrays), (name, layer)
                np.testing.assert_array_equal(drawn[LIVE_STATISTICS[name][0]][layer], values)


def _monitored_run(path, unit: type[torch.nn.Module]) -> None:
    """A 4-8-8-2 MLP with ``unit`` after each hidden layer, trained 4 steps under a Monitor recording every 2."""
    from inspector import Monitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), unit(), torch.nn.Linear(8, 8), unit(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    with Monitor(model, path, every=2, snapshot_every=0, optimizer=optimizer) as monitor:
        for _ in range(4):
            loss = torch.nn.functional.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            monitor.step(loss)


@pytest.mark.parametrize(
    ("unit", "statistic"),
    [
        (torch.nn.GELU, "zero_rate"),
        (torch.nn.SiLU, "zero_rate"),
        (torch.nn.Tanh, "saturation"),
        (torch.nn.Sigmoid, "saturation"),
        (torch.nn.ReLU, "dead_fraction"),
    ],
)
def test_the_live_view_opens_on_the_statistic_its_units_record(tmp_path, unit, statistic):
    _monitored_run(tmp_path / "run", unit)
    run = read_run(tmp_path / "run")
    assert default_statistic([run]) == statistic
    app = app_for_runs(tmp_path / "run", log=lambda _: None)
    assert _find(app.layout, view.LIVE_STAT).value == statistic
    figure = _find(app.layout, view.LIVE_CURVES).figure
    # not an empty figure: one line per hidden layer, the values the run recorded
    hidden = [layer for layer, act in zip(run.layers, run.activations) if act != "identity" and layer != run.layers[-1]]
    assert [trace.name for trace in figure.data] == hidden and len(hidden) == 2
    for trace in figure.data:
        series = run.scalar(statistic, trace.name)
        assert np.isfinite(series.values).all() and len(series.values) == 2
        np.testing.assert_array_equal(trace.y, series.values)
    # the old default has nothing to draw for a GELU or a tanh: the figure says so
    if statistic != "dead_fraction":
        assert not F.live_curves_figure([run], "dead_fraction").data


def test_the_default_statistic_is_the_one_most_layers_record(tmp_path):
    def runs_with(*units: str):
        writer = RunWriter(tmp_path / "-".join(units), meta={"source": "test"})
        writer.set_layers([(f"fc{i}", 4, 3, unit) for i, unit in enumerate(units)])
        writer.close()
        return read_run(tmp_path / "-".join(units))

    assert default_statistic([runs_with("gelu", "gelu", "relu")]) == "zero_rate"
    assert default_statistic([runs_with("tanh", "relu")]) == "dead_fraction"  # a tie: dead fraction first
    assert default_statistic([runs_with("tanh"), runs_with("silu", "sigmoid")]) == "saturation"
    assert default_statistic([runs_with("leaky_relu", "tanh", "prelu")]) == "dead_fraction"
    assert default_statistic([runs_with("identity", "mystery")]) == "weight_norm"
    assert default_statistic([]) == "weight_norm"

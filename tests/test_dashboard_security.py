"""What the dashboard's server accepts (dashboards/security.py), probed with Flask's test client.

Hostile requests must get a short answer (204 no-update, 400, 413, 421), leave
no traceback in the log and add nothing to the memo.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboards import ids
from dashboards.app import create_app, serve
from dashboards.security import LOOPBACK_HOSTS, MAX_REQUEST_BYTES, allowed_hosts, host_name, set_allowed_hosts
from dashboards.state import BoundedCache, estimate_bytes
from dashboards.views import activations as activations_view
from dashboards.views import dead as dead_view
from dashboards.views import importance as importance_view
from dashboards.views import neurons as neurons_view
from dashboards.views import overview as overview_view
from dashboards.views import pruning as pruning_view
from dashboards.views import weights as weights_view
from tests.helpers import tiny_analysis

UPDATE = "/_dash-update-component"


@pytest.fixture(scope="module")
def tiny():
    return tiny_analysis(sparsities=(0.0, 0.5, 0.9))


@pytest.fixture(scope="module")
def app(tiny):
    """One app for the module: each test that counts memo entries compares before and after."""
    analysis, model, data = tiny
    return create_app(analysis, model=model, data=data)


@pytest.fixture
def fresh_app(tiny):
    analysis, model, data = tiny
    return create_app(analysis, model=model, data=data)


def _output_key(app, first_output: str) -> str:
    """The callback_map key of the callback whose first output is ``first_output`` (``id.property``)."""
    for key in app.callback_map:
        names = key[2:-2].split("...") if key.startswith("..") else [key.split("@")[0]]
        if names[0] == first_output:
            return key
    raise AssertionError(f"no callback outputs {first_output}")


def _body(app, first_output: str, *values: object, changed: int = 0) -> dict:
    """A request as the browser sends it: the callback's inputs then states, with ``values`` in order."""
    key = _output_key(app, first_output)
    spec = app.callback_map[key]
    names = key.split("@")[0]
    names = names[2:-2].split("...") if names.startswith("..") else [names]
    outputs = [dict(zip(("id", "property"), n.rsplit(".", 1))) for n in names]
    items = [dict(s, value=v) for s, v in zip(spec["inputs"] + spec["state"], values, strict=True)]
    inputs, state = items[: len(spec["inputs"])], items[len(spec["inputs"]) :]
    trigger = spec["inputs"][changed]
    return {
        "output": key,
        "outputs": outputs if key.startswith("..") else outputs[0],
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{trigger['id']}.{trigger['property']}"],
    }


def _post(app, body: dict | str | bytes, host: str = "127.0.0.1:8050"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return app.server.test_client().post(UPDATE, data=data, content_type="application/json", headers={"Host": host})


def _no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], f"logged: {[r.getMessage() for r in bad]}"


# --------------------------------------------------------------------------- Host header


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("localhost:8050", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8050", "::1"),
        ("[::1]", "::1"),
        ("Box.LAN.", "box.lan"),
        ("", None),
        (None, None),
        ("::1", None),
        ("[::1", None),
        ("[::1]x", None),
        ("a:b", None),
        ("a:80:80", None),
        ("evil.example/x", None),
        ("a b", None),
        ("localhost:123456", None),
    ],
)
def test_host_header_is_parsed_to_its_name(header, name):
    assert host_name(header) == name


def test_loopback_names_are_answered_and_others_refused_with_421(app, caplog):
    client = app.server.test_client()
    for host in ("127.0.0.1:8050", "localhost:8050", "localhost", "[::1]:9000", "LOCALHOST:1"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in (
        "evil.example",
        "evil.example:8050",
        "127.0.0.1.nip.io:8050",
        "localhost.evil.example",
        "[::2]:8050",
        "",
        "a b",
    ):
        response = client.get("/", headers={"Host": host})
        assert response.status_code == 421, host
        assert b"not allowed" in response.data and len(response.data.splitlines()) == 1
    # the callback route too, not only the page
    body = _body(app, f"{activations_view.ACT_PROJ}.figure", "fc1")
    assert _post(app, body, host="evil.example:8050").status_code == 421
    assert _post(app, body).status_code == 200
    _no_tracebacks(caplog)


def test_serve_answers_its_bound_name_and_allowed_hosts(fresh_app, monkeypatch):
    app = fresh_app
    monkeypatch.setattr("dashboards.app.check_port", lambda host, port: None)
    monkeypatch.setattr(app, "run", lambda **kwargs: None)
    serve(app, "0.0.0.0", 8050, allow_hosts=["Box.lan"], no_auth=True)  # the token: test_dashboard_auth.py
    client = app.server.test_client()
    assert client.get("/", headers={"Host": "box.lan:8050"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost:8050"}).status_code == 200
    assert client.get("/", headers={"Host": "0.0.0.0:8050"}).status_code == 421  # a wildcard is no name
    assert client.get("/", headers={"Host": "other.lan"}).status_code == 421
    serve(app, "myhost.lan", 8050, no_auth=True)
    assert client.get("/", headers={"Host": "myhost.lan:8050"}).status_code == 200
    assert client.get("/", headers={"Host": "box.lan:8050"}).status_code == 421
    assert allowed_hosts("::", ["[fe80::1]"]) == LOOPBACK_HOSTS | {"fe80::1"}
    set_allowed_hosts(app, allowed_hosts("127.0.0.1", ["*"]))
    assert client.get("/", headers={"Host": "anything.example"}).status_code == 200


def test_cli_parses_repeated_allow_host():
    from inspector.cli import _build_parser

    args = _build_parser().parse_args(["dashboard", "--allow-host", "a.lan", "--allow-host", "b.lan"])
    assert args.allow_host == ["a.lan", "b.lan"]
    assert _build_parser().parse_args(["dashboard"]).allow_host == []


def test_wsgi_server_answers_loopback_and_the_listed_hosts(tiny, tmp_path, monkeypatch):
    analysis, _, _ = tiny
    analysis.save(tmp_path / "analysis")
    monkeypatch.setenv("DENSE_INSPECTOR_PATH", str(tmp_path / "analysis"))
    monkeypatch.setenv("DENSE_INSPECTOR_ALLOWED_HOSTS", "inspector.example, other.example")
    monkeypatch.setenv("DENSE_INSPECTOR_NO_AUTH", "1")  # the token: tests/test_dashboard_auth.py
    monkeypatch.delitem(sys.modules, "dashboards.wsgi", raising=False)
    wsgi = importlib.import_module("dashboards.wsgi")
    try:
        client = wsgi.server.test_client()
        for host in ("localhost:8000", "inspector.example", "other.example:443"):
            assert client.get("/", headers={"Host": host}).status_code == 200, host
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 421
    finally:
        sys.modules.pop("dashboards.wsgi", None)


# --------------------------------------------------------------------------- request size and shape


def test_request_bodies_over_the_cap_get_413_and_cost_nothing(app, caplog):
    state = app.state
    before = len(state.views)
    huge = "x" * (2 * MAX_REQUEST_BYTES)
    for _ in range(5):
        response = _post(app, _body(app, f"{activations_view.ACT_PROJ}.figure", huge))
        assert response.status_code == 413
    assert len(state.views) == before
    _no_tracebacks(caplog)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        "null",
        json.dumps({"output": "weights-heatmap.figure"}),
        json.dumps({"output": ["x"]}),
        json.dumps(
            {
                "output": "activations-projection.figure",
                "outputs": {"id": "activations-projection", "property": "figure"},
            }
        ),
        json.dumps(
            {
                "output": "activations-projection.figure",
                "outputs": {"id": "x", "property": "figure"},
                "inputs": [{"id": "activations-layer", "property": "value", "value": "fc1"}],
            }
        ),
        json.dumps(
            {
                "output": "activations-projection.figure",
                "outputs": {"id": "activations-projection", "property": "figure"},
                "inputs": [{"id": "dead-layer", "property": "value", "value": "fc1"}],
            }
        ),
        json.dumps(
            {
                "output": "activations-projection.figure",
                "outputs": {"id": "activations-projection", "property": "figure"},
                "inputs": [{"id": "activations-layer", "property": "value", "value": "fc1"}],
                "changedPropIds": [3],
            }
        ),
    ],
)
def test_requests_that_name_no_callback_get_400(app, body, caplog):
    response = _post(app, body)
    assert response.status_code == 400
    assert len(response.data.splitlines()) == 1
    _no_tracebacks(caplog)


@pytest.mark.parametrize("open_, close", [("[", "]"), ('{"a":', "}"), ('{"output": [', "]}")])
def test_json_nested_past_the_recursion_limit_gets_400_without_a_traceback(app, caplog, open_, close):
    depth = (MAX_REQUEST_BYTES - 16) // (len(open_) + len(close))  # under the size cap: the parser must see it
    assert depth > 10 * sys.getrecursionlimit()
    body = open_ * depth + ("1" if open_.endswith(":") else "") + close * depth
    response = _post(app, body)
    assert response.status_code == 400
    assert len(response.data.splitlines()) == 1
    _no_tracebacks(caplog)


# --------------------------------------------------------------------------- callback values

HOSTILE = [
    # (first output, input/state values, which input triggered)
    (f"{dead_view.DEAD_COUNT}.children", (8,), 0),  # one past the last threshold
    (f"{dead_view.DEAD_COUNT}.children", (-1,), 0),
    (f"{dead_view.DEAD_COUNT}.children", ("2",), 0),
    (f"{dead_view.DEAD_COUNT}.children", (2.5,), 0),
    (f"{dead_view.DEAD_COUNT}.children", (True,), 0),
    (f"{dead_view.DEAD_COUNT}.children", ([1],), 0),
    (f"{dead_view.DEAD_STRIP}.figure", ("nope", 1), 0),
    (f"{dead_view.DEAD_STRIP}.figure", ("fc1", 99), 1),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 1, "y": "1e309"}]}, "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 1, "y": "nan"}]}, "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 1, "y": [3]}]}, "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": "x"}, "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ([1, 2], "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"y": 1}]}, "fc9", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"y": 1}]}, "fc1", "sort"), 0),
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", "3"), 1),
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", {"a": 1}), 1),
    (f"{neurons_view.NEURON_TITLE}.children", (["fc1"], 3), 0),
    (f"{neurons_view.NEURON_TITLE}.children", ("x" * 1000, 3), 0),
    (f"{neurons_view.NEURON_TABLE}.data", ("fc7",), 0),
    (f"{ids.NEURON_INDEX}.value", ({"row": 0}, [{"neuron": "1e309"}]), 0),
    (f"{ids.NEURON_INDEX}.value", ({"row": 5}, [{"neuron": 1}]), 0),
    (f"{ids.NEURON_INDEX}.value", ({"row": -1}, [{"neuron": 1}]), 0),
    (f"{ids.NEURON_INDEX}.value", ({"row": 0}, [{"neuron": -4}]), 0),
    (f"{ids.NEURON_INDEX}.value", ({"row": 0}, ["x"]), 0),
    (f"{ids.NEURON_INDEX}.value", ("cell", None), 0),
    (f"{importance_view.IMP_BAR}.figure", ("no_such_method", "all"), 0),
    (f"{importance_view.IMP_BAR}.figure", ("saliency", "17"), 1),
    (f"{importance_view.IMP_BAR}.figure", ("saliency", "-1"), 1),
    (f"{importance_view.IMP_BAR}.figure", ("saliency", 1), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ("saliency", "4"), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ("saliency", [4]), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ({"m": 1}, 4), 0),
    (f"{pruning_view.PRUNE_FIG}.figure", (3,), 0),
    (f"{pruning_view.PRUNE_FIG}.figure", (None,), 0),
    (f"{activations_view.ACT_PROJ}.figure", ("fc2",), 0),  # the output layer has no activation census
    (f"{activations_view.ACT_PROJ}.figure", (None,), 0),
    (f"{weights_view.WEIGHT_HEATMAP}.figure", ("fc1", ["sort", "drop tables"], "signed", None), 1),
    (f"{weights_view.WEIGHT_HEATMAP}.figure", ("fc1", "sort", "signed", None), 1),
    (f"{weights_view.WEIGHT_HEATMAP}.figure", ("fc1", [], "loud", None), 2),
    (f"{weights_view.WEIGHT_HEATMAP}.figure", ("fc1", [], "signed", {"xaxis.range[0]": "1e309"}), 3),
    (f"{weights_view.WEIGHT_HIST}.figure", ("fc3",), 0),
    (f"{weights_view.WEIGHT_SORT}.options", (42,), 0),
    (f"{weights_view.WEIGHT_ZOOM}.data", ({"xaxis.range[0]": 1}, 42), 0),
    (f"{weights_view.WEIGHT_ZOOM}.data", ({"xaxis.range[0]": 1}, "fc1"), 0),  # full resolution: the browser zooms
    # JSON integers beyond float range: float(10**400) raises OverflowError
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", 10**400), 1),
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", -(10**400)), 1),
    (f"{neurons_view.NEURON_TOP}.children", ("fc1", 10**400), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ("saliency", 10**400), 1),
    (f"{importance_view.IMP_BAR}.figure", ("saliency", 10**400), 1),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 1, "y": 10**400}]}, "fc1", []), 0),
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 10**400, "y": 10**400}]}, "fc1", ["sort"]), 0),
    # the report download: n_clicks must be a click count
    (f"{overview_view.REPORT_DOWNLOAD}.data", ("3",), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", ({"a": 1},), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", ([1],), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (-1,), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (1.5,), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (True,), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (10**400,), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (None,), 0),
]


@pytest.mark.parametrize(("output", "values", "changed"), HOSTILE)
def test_malformed_callback_values_answer_no_update_without_a_traceback(app, caplog, output, values, changed):
    before = len(app.state.views)
    response = _post(app, _body(app, output, *values, changed=changed))
    assert response.status_code == 204, response.data[:300]
    assert len(app.state.views) == before
    _no_tracebacks(caplog)


def test_a_click_at_an_overflowing_y_in_raw_json_is_a_no_update(app, caplog):
    body = json.dumps(_body(app, f"{ids.NEURON_LAYER}.value", {"points": [{"x": 1, "y": 0}]}, "fc1", []))
    body = body.replace('"y": 0', '"y": 1e309')  # json.loads reads it as inf
    assert "1e309" in body
    assert _post(app, body).status_code == 204
    body = json.dumps(_body(app, f"{importance_view.SAMPLE_FIG}.figure", "saliency", 0), allow_nan=True)
    assert _post(app, body.replace('"value": 0}', '"value": NaN}')).status_code == 204
    _no_tracebacks(caplog)


LEGIT = [
    (f"{dead_view.DEAD_COUNT}.children", (7,), 0),
    (f"{dead_view.DEAD_STRIP}.figure", ("fc1", 0.0), 1),  # a slider may send an integral float
    (f"{ids.NEURON_LAYER}.value", ({"points": [{"x": 1, "y": 5}]}, "fc1", ["sort"]), 0),
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", 3), 1),
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", None), 1),  # an emptied box: "pick a neuron"
    (f"{neurons_view.NEURON_TITLE}.children", ("fc1", 500), 1),
    (f"{ids.NEURON_INDEX}.value", ({"row": 1, "column": 0}, [{"neuron": 4}, {"neuron": 2}]), 0),
    (f"{importance_view.IMP_BAR}.figure", ("saliency", "2"), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ("saliency", 3), 1),
    (f"{importance_view.SAMPLE_FIG}.figure", ("saliency", 10_000), 1),
    (f"{pruning_view.PRUNE_FIG}.figure", (2,), 0),
    (f"{activations_view.ACT_PROJ}.figure", ("fc1",), 0),
    (f"{weights_view.WEIGHT_HEATMAP}.figure", ("fc2", ["sort"], "abs", None), 1),
    (f"{weights_view.WEIGHT_HIST}.figure", ("fc2",), 0),
    (f"{weights_view.WEIGHT_SORT}.options", ("fc2",), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (1,), 0),
    (f"{overview_view.REPORT_DOWNLOAD}.data", (2.0,), 0),
]


@pytest.mark.parametrize(("output", "values", "changed"), LEGIT)
def test_valid_callback_values_are_answered(app, caplog, output, values, changed):
    response = _post(app, _body(app, output, *values, changed=changed))
    assert response.status_code == 200, response.data[:300]
    assert "response" in response.get_json()
    _no_tracebacks(caplog)


def test_the_report_download_answers_the_html_report(app):
    response = _post(app, _body(app, f"{overview_view.REPORT_DOWNLOAD}.data", 1))
    data = response.get_json()["response"][overview_view.REPORT_DOWNLOAD]["data"]
    assert data["filename"] == "dense-inspector-report.html" and data["content"].lstrip().startswith("<!")


# --------------------------------------------------------------------------- component suites


def _suite_paths(app) -> list[str]:
    page = app.server.test_client().get("/", headers={"Host": "127.0.0.1:8050"}).data.decode()
    return re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)


def test_component_suite_paths_dash_does_not_serve_get_a_one_line_404(app, caplog):
    client = app.server.test_client()
    real = next(p for p in _suite_paths(app) if "dash_core_components" in p)
    assert client.get(real, headers={"Host": "127.0.0.1:8050"}).status_code == 200
    wrong_tag = real.replace(".js", ".v0_0_1.js")  # a real file, a version tag Dash never issued
    for path in (
        "/_dash-component-suites/os/path.py",
        "/_dash-component-suites/dash/../../etc/passwd",
        "/_dash-component-suites/dash/..%2F..%2Fetc%2Fpasswd",
        "/_dash-component-suites/sys/x.js",
        "/_dash-component-suites/dash/no/such/file.js",
        wrong_tag,
    ):
        with caplog.at_level(logging.DEBUG):
            response = client.get(path, headers={"Host": "127.0.0.1:8050"})
        assert response.status_code == 404, path
        assert response.data == b"dense-inspector: no such file\n", path
        assert b"passwd" not in response.data and b"root:" not in response.data
    _no_tracebacks(caplog)


def test_a_table_click_answers_the_neuron_of_the_clicked_row(app):
    response = _post(
        app, _body(app, f"{ids.NEURON_INDEX}.value", {"row": 1, "column": 0}, [{"neuron": 4}, {"neuron": 2}])
    )
    assert response.get_json()["response"][ids.NEURON_INDEX]["value"] == 2


def test_distinct_hostile_strings_add_no_memo_entries(app):
    before = (len(app.state.views), app.state.views.bytes)
    for k in range(150):
        _post(app, _body(app, f"{neurons_view.NEURON_TITLE}.children", f"fc1-{k}-" + "y" * 4000, 3))
        _post(
            app,
            _body(app, f"{importance_view.SAMPLE_FIG}.figure", "saliency", f"{k}"),
        )
    assert (len(app.state.views), app.state.views.bytes) == before


# --------------------------------------------------------------------------- memo bounds


def test_cache_stays_under_its_byte_budget_and_drops_the_oldest():
    cache = BoundedCache(max_entries=1000, max_bytes=10 << 20)
    for k in range(60):
        cache.get_or_compute(("block", k), lambda: np.zeros(1 << 18, dtype=np.float32))  # 1 MiB each
        assert cache.bytes <= cache.max_bytes
    assert 5 <= len(cache) <= 10
    assert cache.get_or_compute(("block", 59), lambda: None) is not None  # the newest is kept
    assert cache.get_or_compute(("block", 0), lambda: "recomputed") == "recomputed"  # the oldest went
    huge = np.zeros(20 << 18, dtype=np.float32)  # 20 MiB: over the whole budget, returned but not kept
    assert cache.get_or_compute(("huge",), lambda: huge) is huge
    assert ("huge",) not in cache._entries and cache.bytes <= cache.max_bytes


def test_cache_counts_entries_too():
    cache = BoundedCache(max_entries=3, max_bytes=1 << 30)
    for k in range(10):
        cache.get_or_compute(k, lambda k=k: k)
    assert len(cache) == 3


def test_figure_size_estimate_covers_its_arrays():
    z = np.zeros((300, 400), dtype=np.float32)
    fig = go.Figure(go.Heatmap(z=z, customdata=np.zeros((300, 400), dtype=np.int32)))
    assert estimate_bytes(fig) >= 2 * z.nbytes
    assert estimate_bytes((fig, "note")) > estimate_bytes(fig)
    assert estimate_bytes({"content": "x" * 5_000_000}) >= 5_000_000


def test_memo_of_a_live_app_stays_in_its_byte_budget(fresh_app):
    app = fresh_app
    assert _post(app, _body(app, f"{neurons_view.NEURON_TITLE}.children", "fc1", 0, changed=1)).status_code == 200
    panel = app.state.views.bytes  # one neuron's title and four figures
    assert panel > 10_000
    budget = int(2.5 * panel)
    app.state.views = BoundedCache(max_entries=512, max_bytes=budget)
    for j in range(6):
        assert _post(app, _body(app, f"{neurons_view.NEURON_TITLE}.children", "fc1", j, changed=1)).status_code == 200
        assert app.state.views.bytes <= budget
    assert len(app.state.views) == 2  # the older panels were dropped to stay in budget

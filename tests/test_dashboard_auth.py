"""The dashboard's token (dashboards/security.py), over HTTP with Flask's test client and a live server.

Off loopback every route answers 401 without the token and 403 with a wrong one; the token in the
query is exchanged for an HttpOnly, SameSite=Strict cookie by a redirect that strips it; scripts send
``Authorization: token ...``; loopback asks for nothing unless a token is given.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import threading
import urllib.error
import urllib.request
from http.cookies import SimpleCookie

import pytest
from werkzeug.serving import make_server

from dashboards import security
from dashboards.app import create_app, serve
from dashboards.security import TOKEN_PARAM, auth_token, dashboard_url, is_loopback, set_token
from dashboards.views import activations as activations_view
from inspector.cli import main
from inspector.errors import InspectorError
from tests.helpers import tiny_analysis

TOKEN = "s3cret-Token_0123456789"
HOST = {"Host": "box.lan:8050"}
UPDATE = "/_dash-update-component"


@pytest.fixture(scope="module")
def tiny():
    return tiny_analysis()


@pytest.fixture(scope="module")
def app(tiny):
    analysis, model, data = tiny
    app = create_app(analysis, model=model, data=data, hosts=["box.lan", "127.0.0.1", "localhost"], token=TOKEN)
    return app


def _no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], f"logged: {[r.getMessage() for r in bad]}"


def _update_body(app) -> dict:
    """A valid request for the activations projection (layer fc1)."""
    key = next(k for k in app.callback_map if k.startswith(f"{activations_view.ACT_PROJ}.figure"))
    spec = app.callback_map[key]
    inputs = [dict(spec["inputs"][0], value="fc1")]
    output = dict(zip(("id", "property"), key.split("@")[0].rsplit(".", 1)))
    return {
        "output": key,
        "outputs": output,
        "inputs": inputs,
        "state": [],
        "changedPropIds": [f"{inputs[0]['id']}.value"],
    }


def _routes(app) -> list[tuple[str, str]]:
    """(method, path) of every kind of route: the page, Dash's JSON routes, a component suite, assets,
    the favicon, an unknown path."""
    page = app.server.test_client().get("/", headers={**HOST, "Authorization": f"token {TOKEN}"}).data.decode()
    suites = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert suites, "the page names no component suite"
    return [
        ("GET", "/"),
        ("GET", "/_dash-layout"),
        ("GET", "/_dash-dependencies"),
        ("POST", UPDATE),
        ("GET", suites[0]),
        ("GET", "/assets/style.css"),
        ("GET", "/_favicon.ico"),
        ("GET", "/no/such/page"),
    ]


def _request(client, app, method: str, path: str, headers: dict):
    if method == "POST":
        return client.post(path, data=json.dumps(_update_body(app)), content_type="application/json", headers=headers)
    return client.get(path, headers=headers)


# --------------------------------------------------------------------------- refusals


def test_every_route_answers_401_without_a_credential(app, caplog):
    client = app.server.test_client()
    for method, path in _routes(app):
        response = _request(client, app, method, path, HOST)
        assert response.status_code == 401, path
        assert len(response.data.splitlines()) == 1 and b"token" in response.data, path
        assert response.headers["WWW-Authenticate"].startswith("Token")
        assert b"dense-inspector \xc2\xb7" not in response.data  # nothing of the page
    _no_tracebacks(caplog)


@pytest.mark.parametrize(
    "credential",
    [
        {"query": "wrong"},
        {"query": ""},
        {"query": TOKEN + "x"},
        {"query": TOKEN[:-1]},
        {"query": "tökén"},
        {"header": "token wrong"},
        {"header": "Bearer wrong"},
        {"header": "token "},
        {"cookie": "0" * 64},
        {"cookie": TOKEN},  # the cookie holds a digest of the token, not the token
    ],
)
def test_every_route_answers_403_with_a_wrong_credential(app, caplog, credential):
    client = app.server.test_client()
    headers = dict(HOST)
    if "header" in credential:
        headers["Authorization"] = credential["header"]
    if "cookie" in credential:
        client.set_cookie("dense-inspector-token-80", credential["cookie"], domain="box.lan")
    for method, path in _routes(app):
        if "query" in credential:
            path = f"{path}{'&' if '?' in path else '?'}token={urllib.request.quote(credential['query'])}"
        response = _request(client, app, method, path, headers)
        assert response.status_code == 403, (path, credential)
        assert response.data == b"dense-inspector: wrong token; open the URL the dashboard printed at start\n"
    _no_tracebacks(caplog)


def test_the_host_check_comes_before_the_token(app):
    client = app.server.test_client()
    response = client.get(f"/?token={TOKEN}", headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert "Set-Cookie" not in response.headers


# --------------------------------------------------------------------------- the token accepted


def test_a_header_token_opens_every_route(app, caplog):
    client = app.server.test_client()
    for scheme in ("token", "Bearer", "TOKEN"):
        for method, path in _routes(app):
            response = _request(client, app, method, path, {**HOST, "Authorization": f"{scheme} {TOKEN}"})
            expected = 404 if path == "/assets/style.css" else 200
            assert response.status_code == expected, (scheme, path, response.data[:200])
    # another scheme (a proxy's Basic) is not ours: it neither opens nor closes the door
    response = client.get("/", headers={**HOST, "Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    _no_tracebacks(caplog)


def test_the_query_token_is_exchanged_for_a_cookie_by_a_redirect_that_strips_it(app, caplog):
    client = app.server.test_client()
    response = client.get(f"/?x=1&token={TOKEN}&y=2", headers=HOST)
    assert response.status_code == 302
    assert response.headers["Location"] == "/?x=1&y=2"  # the token is gone, the rest kept
    assert TOKEN not in response.headers["Location"]
    raw = response.headers["Set-Cookie"]
    cookie = SimpleCookie(raw)
    (name,) = cookie.keys()
    morsel = cookie[name]
    assert name == "dense-inspector-token-80"  # the test client's port
    assert morsel.value != TOKEN and len(morsel.value) == 64  # a digest, not the token
    assert "HttpOnly" in raw and "SameSite=Strict" in raw and morsel["path"] == "/"
    assert "Secure" not in raw  # plain http: a Secure cookie would never come back
    # the test client keeps the cookie: every route opens with it alone
    for method, path in _routes(app):
        response = _request(client, app, method, path, HOST)
        expected = 404 if path == "/assets/style.css" else 200
        assert response.status_code == expected, path
    assert client.get(f"/_dash-layout?token={TOKEN}", headers=HOST).headers["Location"] == "/_dash-layout"
    # a callback POST with the token in the query is answered, not redirected
    body = json.dumps(_update_body(app))
    fresh = app.server.test_client()
    response = fresh.post(f"{UPDATE}?token={TOKEN}", data=body, content_type="application/json", headers=HOST)
    assert response.status_code == 200
    _no_tracebacks(caplog)


@pytest.mark.parametrize("path", ["//evil.example/", "/\\evil.example/", "///evil.example"])
def test_the_redirect_stays_on_this_site(app, path):
    response = app.server.test_client().get(f"{path}?token={TOKEN}", headers=HOST)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location[:2]


def test_the_token_is_compared_in_constant_time(app, monkeypatch):
    calls = []
    real = security.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    client = app.server.test_client()
    assert client.get("/", headers={**HOST, "Authorization": "token guess"}).status_code == 403
    assert (b"guess", TOKEN.encode()) in calls
    assert client.get("/?token=guess2", headers=HOST).status_code == 403
    assert (b"guess2", TOKEN.encode()) in calls
    calls.clear()
    client.set_cookie("dense-inspector-token-80", "c" * 64, domain="box.lan")
    assert client.get("/", headers=HOST).status_code == 403
    assert calls and calls[-1][0] == b"c" * 64


def test_a_live_server_asks_for_the_token_and_the_cookie_then_opens_it(tiny):
    """Over a real socket with urllib: 401, 403, the redirect with its cookie, then 200."""
    analysis, _, _ = tiny
    app = create_app(analysis, token=TOKEN)  # loopback names, a token given: asked for all the same
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        for url, status in ((f"{base}/", 401), (f"{base}/?token=nope", 403), (f"{base}/?token={TOKEN}", 302)):
            with pytest.raises(urllib.error.HTTPError) as info:
                opener.open(url, timeout=10)
            assert info.value.code == status, url
        headers = info.value.headers
        assert headers["Location"] == "/"
        cookie = SimpleCookie(headers["Set-Cookie"])
        (name,) = cookie.keys()
        assert name == f"dense-inspector-token-{port}"
        request = urllib.request.Request(f"{base}/_dash-layout", headers={"Cookie": f"{name}={cookie[name].value}"})
        with opener.open(request, timeout=10) as response:
            assert response.status == 200 and b"props" in response.read()
        request = urllib.request.Request(f"{base}/", headers={"Authorization": f"Bearer {TOKEN}"})
        with opener.open(request, timeout=10) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- which token, where


def test_loopback_asks_for_nothing_unless_a_token_is_given():
    assert auth_token("127.0.0.1") is None
    assert auth_token("localhost") is None
    assert auth_token("::1") is None
    assert auth_token("127.0.0.2") is None
    assert auth_token("127.0.0.1", TOKEN) == TOKEN
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "box.lan"):
        assert not is_loopback(host)
        first, second = auth_token(host), auth_token(host)
        assert first is not None and second is not None and first != second  # random each time
        assert len(first) >= 43 and re.fullmatch(r"[A-Za-z0-9_\-]+", first)  # token_urlsafe(32): 256 bits
    assert auth_token("0.0.0.0", no_auth=True) is None
    with pytest.raises(InspectorError, match="contradict"):
        auth_token("0.0.0.0", TOKEN, no_auth=True)
    for bad in ("", "has space", "tab\there", "ünïcode", "new\nline"):
        with pytest.raises(InspectorError, match="visible ASCII"):
            auth_token("0.0.0.0", bad)


def test_the_printed_url_carries_the_token_and_a_name_the_server_answers():
    assert dashboard_url("0.0.0.0", 8050, "a/b+c", ["*", "Box.lan"]) == "http://box.lan:8050/?token=a%2Fb%2Bc"
    assert dashboard_url("0.0.0.0", 8050, "t") == "http://127.0.0.1:8050/?token=t"
    assert dashboard_url("::", 9000, "t", ["fe80::1"]) == "http://[fe80::1]:9000/?token=t"
    assert dashboard_url("127.0.0.1", 8050) == "http://127.0.0.1:8050/"


def _fake_run(app, monkeypatch):
    monkeypatch.setattr("dashboards.app.check_port", lambda host, port: None)
    monkeypatch.setattr(app, "run", lambda **kwargs: None)


def test_serve_off_loopback_prints_a_random_token_that_then_opens_it(tiny, monkeypatch, capsys):
    analysis, _, _ = tiny
    app = create_app(analysis)
    _fake_run(app, monkeypatch)
    serve(app, "0.0.0.0", 8050, allow_hosts=["box.lan"])
    out = capsys.readouterr().out.strip()
    match = re.fullmatch(
        r"dense-inspector dashboard on http://box\.lan:8050/\?token=([A-Za-z0-9_\-]{43}) \(Ctrl\+C to stop\)", out
    )
    assert match, out
    token = match.group(1)
    client = app.server.test_client()
    assert client.get("/", headers=HOST).status_code == 401
    assert client.get("/", headers={**HOST, "Authorization": f"token {token}"}).status_code == 200
    # the same app served on loopback afterwards: no token, as before
    serve(app, "127.0.0.1", 8050)
    assert capsys.readouterr().out.strip() == "dense-inspector dashboard on http://127.0.0.1:8050/ (Ctrl+C to stop)"
    assert client.get("/", headers={"Host": "127.0.0.1:8050"}).status_code == 200


def test_dash_s_own_tokenless_url_line_is_not_printed_when_a_token_is_asked_for(tiny, monkeypatch):
    analysis, _, _ = tiny
    app = create_app(analysis)
    monkeypatch.setattr("dashboards.app.check_port", lambda host, port: None)
    says_its_url: list[bool] = []  # Dash logs "Dash is running on http://HOST:PORT/" at INFO inside run()
    monkeypatch.setattr(app, "run", lambda **kwargs: says_its_url.append(app.logger.isEnabledFor(logging.INFO)))
    serve(app, "0.0.0.0", 8050, allow_hosts=["box.lan"], log=lambda line: None)
    serve(app, "127.0.0.1", 8050, log=lambda line: None)
    assert says_its_url == [False, True]


def test_no_auth_is_an_explicit_choice_with_a_one_line_warning(tiny, monkeypatch, capsys):
    analysis, _, _ = tiny
    app = create_app(analysis)
    _fake_run(app, monkeypatch)
    serve(app, "0.0.0.0", 8050, allow_hosts=["box.lan"], no_auth=True)
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("warning: --no-auth: anyone who can reach")
    assert "token" not in captured.out
    assert app.server.test_client().get("/", headers=HOST).status_code == 200
    serve(app, "127.0.0.1", 8050, no_auth=True)  # nothing to warn about on loopback
    assert capsys.readouterr().err == ""
    serve(app, "127.0.0.1", 8050, allow_hosts=["localhost", "*"])  # a proxy here brings others: say how to lock it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: it answers * without a token") and "--token" in err


def test_a_token_given_on_loopback_is_asked_for(tiny, monkeypatch, capsys):
    analysis, _, _ = tiny
    app = create_app(analysis)
    _fake_run(app, monkeypatch)
    serve(app, "127.0.0.1", 8050, token=TOKEN)
    assert f"?token={TOKEN}" in capsys.readouterr().out
    client = app.server.test_client()
    assert client.get("/", headers={"Host": "localhost:8050"}).status_code == 401
    assert client.get(f"/?{TOKEN_PARAM}={TOKEN}", headers={"Host": "localhost:8050"}).status_code == 302
    set_token(app, None)
    assert client.get("/", headers={"Host": "localhost:8050"}).status_code == 200


# --------------------------------------------------------------------------- the command and the WSGI app


@pytest.fixture
def saved(tiny, tmp_path):
    analysis, _, _ = tiny
    analysis.save(tmp_path / "analysis")
    return tmp_path / "analysis"


@pytest.fixture
def served(monkeypatch):
    import dashboards.app

    calls: list[dict] = []
    monkeypatch.setattr(dashboards.app, "serve", lambda app, *a, **k: calls.append({"app": app, "args": a, **k}))
    monkeypatch.setattr(dashboards.app, "check_port", lambda *a: None)
    monkeypatch.delenv("DENSE_INSPECTOR_TOKEN", raising=False)
    return calls


def test_the_command_asks_for_a_token_off_loopback(saved, served, monkeypatch, capsys):
    assert main(["dashboard", str(saved), "--host", "0.0.0.0", "--allow-host", "box.lan"]) == 0
    token = served[-1]["token"]
    assert token is not None and len(token) >= 43 and served[-1]["no_auth"] is False
    assert main(["dashboard", str(saved)]) == 0
    assert served[-1]["token"] is None  # loopback: as before
    assert main(["dashboard", str(saved), "--token", TOKEN]) == 0
    assert served[-1]["token"] == TOKEN
    monkeypatch.setenv("DENSE_INSPECTOR_TOKEN", "from-the-environment")
    assert main(["dashboard", str(saved), "--host", "0.0.0.0"]) == 0
    assert served[-1]["token"] == "from-the-environment"
    assert main(["dashboard", str(saved), "--host", "0.0.0.0", "--token", TOKEN]) == 0
    assert served[-1]["token"] == TOKEN  # the flag wins over the environment
    assert main(["dashboard", str(saved), "--host", "0.0.0.0", "--no-auth"]) == 0
    assert served[-1]["token"] is None and served[-1]["no_auth"] is True
    capsys.readouterr()
    calls = len(served)
    for argv in (["--token", TOKEN, "--no-auth"], ["--token", "two words"], ["--token", ""]):
        assert main(["dashboard", str(saved), "--host", "0.0.0.0", *argv]) != 0, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert len(served) == calls  # refused before anything was served


def _import_wsgi(monkeypatch, saved, **env: str):
    monkeypatch.setenv("DENSE_INSPECTOR_PATH", str(saved))
    for name in ("DENSE_INSPECTOR_TOKEN", "DENSE_INSPECTOR_NO_AUTH", "DENSE_INSPECTOR_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "dashboards.wsgi", raising=False)
    try:
        return importlib.import_module("dashboards.wsgi")
    finally:
        sys.modules.pop("dashboards.wsgi", None)


def test_the_wsgi_app_needs_a_token_unless_told_otherwise(saved, monkeypatch):
    with pytest.raises(InspectorError, match="DENSE_INSPECTOR_TOKEN"):
        _import_wsgi(monkeypatch, saved)
    with pytest.raises(InspectorError, match="contradict"):
        _import_wsgi(monkeypatch, saved, DENSE_INSPECTOR_TOKEN=TOKEN, DENSE_INSPECTOR_NO_AUTH="1")
    wsgi = _import_wsgi(monkeypatch, saved, DENSE_INSPECTOR_TOKEN=TOKEN)
    client = wsgi.server.test_client()
    local = {"Host": "localhost:8000"}  # loopback too: the app cannot see where gunicorn listens
    assert client.get("/", headers=local).status_code == 401
    assert client.get("/?token=x", headers=local).status_code == 403
    assert client.get("/", headers={**local, "Authorization": f"token {TOKEN}"}).status_code == 200
    assert client.get(f"/?token={TOKEN}", headers=local).status_code == 302
    assert client.get("/_dash-layout", headers=local).status_code == 200  # the cookie
    wsgi = _import_wsgi(monkeypatch, saved, DENSE_INSPECTOR_NO_AUTH="1")
    assert wsgi.server.test_client().get("/", headers=local).status_code == 200


def test_the_request_log_hides_the_token(tiny, monkeypatch, caplog):
    analysis, _, _ = tiny
    app = create_app(analysis)
    _fake_run(app, monkeypatch)
    serve(app, "127.0.0.1", 8050, token=TOKEN)
    serve(app, "127.0.0.1", 8050, token=TOKEN)  # installed once
    logger = logging.getLogger("werkzeug")
    assert sum(isinstance(f, security.HideToken) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logger.info('%s - - "%s" %s -', "127.0.0.1", f"GET /_dash-layout?x=1&token={TOKEN}&y=2 HTTP/1.1", 302)
        logger.info('%s - - "%s" %s -', "127.0.0.1", f"GET /?token={TOKEN} HTTP/1.1", 302)
    messages = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert messages == [
        '127.0.0.1 - - "GET /_dash-layout?x=1&token=[secret]&y=2 HTTP/1.1" 302 -',
        '127.0.0.1 - - "GET /?token=[secret] HTTP/1.1" 302 -',
    ]
    assert not any(TOKEN in m for m in messages)

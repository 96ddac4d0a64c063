"""What the dashboard's web server accepts: which hosts, how large a request, which callback values.

A dashboard bound to 127.0.0.1 is still reachable from any web page the user
visits through DNS rebinding (evil.example resolves to 127.0.0.1 after the page
has loaded), so the ``Host`` header is checked against an allowlist: the
loopback names always, the bound name, and whatever ``--allow-host`` adds.
``*`` turns the check off, for a reverse proxy that does its own.

Off loopback the server also asks for a secret, as Jupyter does (:func:`auth_token`): a random
token printed in the URL at start (``http://HOST:PORT/?token=...``). A request carrying the token
in its query is answered with a redirect to the same URL without it, setting an HttpOnly,
SameSite=Strict cookie that carries a digest of the token; scripts send ``Authorization: token
TOKEN`` (or ``Bearer TOKEN``). Every route (the page, the layout, callbacks, component suites,
assets, anything else) answers 401 without a credential and 403 with a wrong one, compared in
constant time (:func:`hmac.compare_digest`). Loopback serves without a token unless one is given.

Every request body is capped (:data:`MAX_REQUEST_BYTES`); the largest
legitimate callback request (a page of the neuron table) is a few kilobytes.
A callback request must name a registered callback with its own inputs, and
every callback validates its values with the helpers below, answering
anything else with ``PreventUpdate`` (HTTP 204): never a traceback in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
from collections.abc import Collection, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from dash import Dash
from dash.exceptions import DependencyException, PreventUpdate
from flask import Response, current_app, request

from inspector.errors import InspectorError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_HOST = "*"
# Binding to these listens everywhere; they are not names a browser would send.
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
MAX_REQUEST_BYTES = 1 << 20
ALLOWED_HOSTS_KEY = "DENSE_INSPECTOR_ALLOWED_HOSTS"
TOKEN_ENV = "DENSE_INSPECTOR_TOKEN"  # the token, for the CLI and the WSGI app
NO_AUTH_ENV = "DENSE_INSPECTOR_NO_AUTH"  # "1": the WSGI app serves without a token
TOKEN_KEY = "DENSE_INSPECTOR_TOKEN"  # app.server.config: the token asked for (None: none)
TOKEN_PARAM = "token"
COOKIE_NAME = "dense-inspector-token"  # followed by the server's port: two dashboards on one host keep theirs
_COOKIE_SALT = b"dense-inspector session cookie"
_TOKEN = re.compile(r"[!-~]+")  # visible ASCII: it travels in a URL, a header and a terminal line

_PORT = re.compile(r"[0-9]{1,5}")
_NAME = re.compile(r"[a-z0-9.\-_:]+")  # host names, IPv4, and (inside brackets) IPv6

T = TypeVar("T")


# --------------------------------------------------------------------------- hosts


def host_name(header: str | None) -> str | None:
    """The host of a ``Host`` header without its port, lower-cased; None when malformed.

    ``localhost:8050`` -> ``localhost``; ``[::1]:8050`` -> ``::1``; ``Example.COM.`` -> ``example.com``.
    """
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None
    else:
        name, colon, port = header.partition(":")
        if colon and not _PORT.fullmatch(port):
            return None
        if ":" in name:
            return None
    name = name.rstrip(".")
    return name if name and _NAME.fullmatch(name) else None


def normalise_host(host: str) -> str:
    """A user-given host (``Example.com``, ``[::1]``) as :func:`host_name` reports it."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def allowed_hosts(bind_host: str = "127.0.0.1", extra: Iterable[str] = ()) -> frozenset[str]:
    """The hosts a server bound to ``bind_host`` answers: loopback, ``bind_host`` unless it is a
    wildcard address, and ``extra`` (``*`` allows any)."""
    hosts = set(LOOPBACK_HOSTS)
    if normalise_host(bind_host) not in WILDCARD_BINDS:
        hosts.add(normalise_host(bind_host))
    hosts.update(ANY_HOST if h.strip() == ANY_HOST else normalise_host(h) for h in extra if h.strip())
    return frozenset(hosts)


def set_allowed_hosts(app: Dash, hosts: Iterable[str]) -> None:
    app.server.config[ALLOWED_HOSTS_KEY] = frozenset(hosts)


def _check_host() -> Response | None:
    allowed: Collection[str] = current_app.config.get(ALLOWED_HOSTS_KEY, LOOPBACK_HOSTS)
    if ANY_HOST in allowed:
        return None
    raw = request.headers.get("Host")
    name = host_name(raw)
    if name is not None and name in allowed:
        return None
    shown = (raw or "")[:80].encode("ascii", "replace").decode("ascii")
    hint = f"restart it with --allow-host {name}" if name else "send a valid Host header"
    # 421 Misdirected Request: this server does not answer for that name
    return Response(f"dense-inspector: host {shown!r} is not allowed; {hint}\n", status=421, mimetype="text/plain")


# --------------------------------------------------------------------------- token


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = normalise_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def checked_token(token: str) -> str:
    """``token`` when it can travel in a URL and a header (visible ASCII, no spaces); else one line."""
    if not _TOKEN.fullmatch(token):
        raise InspectorError(
            "the dashboard token must be non-empty visible ASCII without spaces; omit --token for a random one"
        )
    return token


def auth_token(host: str, token: str | None = None, no_auth: bool = False) -> str | None:
    """The token a server bound to ``host`` asks for: ``token`` when given; none on loopback or with
    ``no_auth`` (an explicit choice); otherwise a new random one (``secrets.token_urlsafe``, 256 bits)."""
    if token is not None and no_auth:
        raise InspectorError("--token and --no-auth contradict each other; pass one of them")
    if token is not None:
        return checked_token(token)
    if no_auth or is_loopback(host):
        return None
    return secrets.token_urlsafe(32)


def set_token(app: Dash, token: str | None) -> None:
    """Ask every request to ``app`` for ``token`` (None: ask for nothing)."""
    app.server.config[TOKEN_KEY] = None if token is None else checked_token(token)


def dashboard_url(host: str, port: int, token: str | None = None, allow_hosts: Iterable[str] = ()) -> str:
    """The URL to open: the bound name, or for a wildcard bind the first allowed name (else 127.0.0.1),
    with ``?token=`` when one is asked for."""
    name = normalise_host(host)
    if name in WILDCARD_BINDS:
        named = [normalise_host(h) for h in allow_hosts if h.strip() and h.strip() != ANY_HOST]
        name = named[0] if named else "127.0.0.1"
    shown = f"[{name}]" if ":" in name else name
    query = f"?{TOKEN_PARAM}={quote(token, safe='')}" if token is not None else ""
    return f"http://{shown}:{port}/{query}"


def _same(given: str, expected: str) -> bool:
    """Constant-time equality, so that the time of a refusal tells nothing about the token."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def _cookie_value(token: str) -> str:
    """What the cookie holds: a digest of the token, not the token (the cookie may be logged or copied)."""
    return hmac.new(token.encode(), _COOKIE_SALT, hashlib.sha256).hexdigest()


def _cookie_name() -> str:
    port = str(request.environ.get("SERVER_PORT", ""))
    return f"{COOKIE_NAME}-{port}" if port.isdigit() else COOKIE_NAME


def _refuse(status: int) -> Response:
    if status == 401:
        text = (
            "dense-inspector: this dashboard asks for its token: open the URL it printed at start "
            "(.../?token=...), or send the header 'Authorization: token TOKEN'\n"
        )
    else:
        text = "dense-inspector: wrong token; open the URL the dashboard printed at start\n"
    response = Response(text, status=status, mimetype="text/plain")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Token realm="dense-inspector"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _without_token(token: str) -> Response:
    """A redirect to the requested URL without ``token=``, setting the cookie that stands for it."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if k != TOKEN_PARAM]
    # one leading slash: "//evil.example" or "/\\evil.example" would send the browser to another site
    path = quote("/" + (request.script_root + request.path).lstrip("/\\"), safe="/:@!$&'()*+,;=-._~")
    response = Response("", status=302, headers={"Location": path + (f"?{urlencode(kept)}" if kept else "")})
    response.set_cookie(
        _cookie_name(), _cookie_value(token), httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_token() -> Response | None:
    """Refuse a request without the token (401) or with a wrong one (403), when a token is asked for.

    The first credential present decides: the query's ``token``, then an ``Authorization: token``
    or ``Bearer`` header (other schemes, e.g. a proxy's Basic, are left to the proxy), then the cookie.
    """
    token: str | None = current_app.config.get(TOKEN_KEY)
    if token is None:
        return None
    given = request.args.get(TOKEN_PARAM)
    if given is not None:
        if not _same(given, token):
            return _refuse(403)
        return _without_token(token) if request.method in ("GET", "HEAD") else None
    scheme, _, credential = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() in ("token", "bearer"):
        return None if _same(credential.strip(), token) else _refuse(403)
    cookie = request.cookies.get(_cookie_name())
    if cookie is not None:
        return None if _same(cookie, _cookie_value(token)) else _refuse(403)
    return _refuse(401)


class HideToken(logging.Filter):
    """Write ``token=...`` in a log line as ``token=[secret]`` (the development server logs every URL)."""

    _QUERY = re.compile(r"(\btoken=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = self._QUERY.sub(r"\1[secret]", message), ()
        return True


def hide_token_in_logs(logger_name: str = "werkzeug") -> None:
    """Install :class:`HideToken` on ``logger_name`` (the development server's request log), once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, HideToken) for f in logger.filters):
        logger.addFilter(HideToken())


# --------------------------------------------------------------------------- component suites


def _not_found() -> Response:
    return Response("dense-inspector: no such file\n", status=404, mimetype="text/plain")


def _guard_component_suites(app: Dash) -> None:
    """Answer a component-suite path Dash does not serve (an unregistered package such as ``os``, a
    ``..`` path, a real file with a wrong version tag) with one-line 404s, not a 500 and a traceback."""
    server = app.server
    for rule in list(server.url_map.iter_rules()):
        if "_dash-component-suites" not in rule.rule:
            continue
        serve = server.view_functions[rule.endpoint]

        def guarded(*args: Any, _serve: Any = serve, **kwargs: Any) -> Any:
            try:
                return _serve(*args, **kwargs)
            except (DependencyException, KeyError, OSError, ValueError):
                return _not_found()

        server.view_functions[rule.endpoint] = guarded


# --------------------------------------------------------------------------- callback requests


def _matches(items: object, expected: list[dict[str, Any]]) -> bool:
    if not isinstance(items, list) or len(items) != len(expected):
        return False
    return all(
        isinstance(item, dict) and item.get("id") == spec["id"] and item.get("property") == spec["property"]
        for item, spec in zip(items, expected)
    )


def _outputs_match(outputs: object, output_key: str) -> bool:
    """``outputs`` names the same (id, property) pairs as the callback's key ``..a.p...b.q..``."""
    key = output_key.split("@", 1)[0]  # allow_duplicate outputs carry a hash after the property
    names = key[2:-2].split("...") if key.startswith("..") else [key]
    expected = [dict(zip(("id", "property"), name.rsplit(".", 1))) for name in names]
    if not key.startswith(".."):
        outputs = [outputs]
    if not isinstance(outputs, list) or len(outputs) != len(expected):
        return False
    return all(
        isinstance(o, dict)
        and o.get("id") == e.get("id")
        and isinstance(o.get("property"), str)
        and o["property"].split("@", 1)[0] == e.get("property")
        for o, e in zip(outputs, expected)
    )


def callback_request_problem(body: object, callback_map: dict[str, dict[str, Any]]) -> str | None:
    """Why ``body`` is not a request for one of the app's callbacks, or None when it is."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "it names no callback of this dashboard"
    spec = callback_map[output]
    if not _matches(body.get("inputs"), spec["inputs"]) or not _matches(body.get("state", []), spec["state"]):
        return "its inputs are not the callback's"
    if not _outputs_match(body.get("outputs"), output):
        return "its outputs are not the callback's"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "changedPropIds is not a list of strings"
    return None


def protect(app: Dash, hosts: Iterable[str] | None = None, token: str | None = None) -> None:
    """Cap request bodies, check ``Host`` against ``hosts`` (default: loopback), then the ``token``
    (default: none; :func:`set_token` changes it), and reject callback requests that do not match a
    registered callback or component-suite paths Dash does not serve, each with one short response."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    set_allowed_hosts(app, LOOPBACK_HOSTS if hosts is None else hosts)
    set_token(app, token)
    server.before_request(_check_host)  # first: a rebinding page learns nothing, not even that a token is asked
    server.before_request(_check_token)
    _guard_component_suites(app)
    endpoint = app.config.routes_pathname_prefix + "_dash-update-component"
    dispatch = server.view_functions[endpoint]

    def guarded_dispatch(*args: Any, **kwargs: Any) -> Any:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # '[' * 400000 fits the size cap; json recurses once per level
            body = None
        problem = callback_request_problem(body, app.callback_map)
        if problem is not None:
            return Response(f"dense-inspector: not a callback request: {problem}\n", status=400, mimetype="text/plain")
        return dispatch(*args, **kwargs)

    server.view_functions[endpoint] = guarded_dispatch


# --------------------------------------------------------------------------- callback values


def index_or_none(value: object, size: int) -> int | None:
    """``value`` as an index into ``range(size)``; None for anything else.

    Accepts ints and integral finite floats (``3.0``, as a number input sends);
    rejects bools, strings, ``inf``/``nan``, fractions and out-of-range numbers.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    i = int(value)
    return i if 0 <= i < size else None


def index(value: object, size: int) -> int:
    """:func:`index_or_none`, answering a bad value with ``PreventUpdate``."""
    i = index_or_none(value, size)
    if i is None:
        raise PreventUpdate
    return i


def finite_number(value: object) -> float | None:
    """A finite real number (not a bool), or None; None too for a JSON integer beyond float range (10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def clicks(value: object) -> int:
    """A button's ``n_clicks``: a non-negative int (an integral float such as ``2.0`` too); else ``PreventUpdate``."""
    count = finite_number(value)
    if count is None or count < 0 or not count.is_integer():
        raise PreventUpdate
    return int(count)


def choice(value: object, options: Collection[T]) -> T:
    """``value`` when it is one of ``options``; otherwise ``PreventUpdate``."""
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value not in options:
        raise PreventUpdate
    return value  # type: ignore[return-value]


def flags(value: object, options: Collection[str]) -> frozenset[str]:
    """A checklist's value (a list of option values), or ``PreventUpdate``; None means none ticked."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v in options for v in value):
        raise PreventUpdate
    return frozenset(value)

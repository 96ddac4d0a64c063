"""What the dashboard's web server accepts: which hosts, how large a request, which callback values.

A dashboard bound to 127.0.0.1 is still reachable from any web page the user
visits through DNS rebinding (evil.example resolves to 127.0.0.1 after the page
has loaded), so the ``Host`` header is checked against an allowlist: the
loopback names always, the bound name, and whatever ``--allow-host`` adds.
``*`` turns the check off, for a reverse proxy that does its own.

Every request body is capped (:data:`MAX_REQUEST_BYTES`); the largest
legitimate callback request (a page of the neuron table) is a few kilobytes.
A callback request must name a registered callback with its own inputs, and
every callback validates its values with the helpers below, answering
anything else with ``PreventUpdate`` (HTTP 204): never a traceback in the log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from typing import Any, TypeVar

from dash import Dash
from dash.exceptions import PreventUpdate
from flask import Response, current_app, request

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_HOST = "*"
# Binding to these listens everywhere; they are not names a browser would send.
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
MAX_REQUEST_BYTES = 1 << 20
ALLOWED_HOSTS_KEY = "DENSE_INSPECTOR_ALLOWED_HOSTS"

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


def protect(app: Dash, hosts: Iterable[str] | None = None) -> None:
    """Cap request bodies, check ``Host`` against ``hosts`` (default: loopback) and reject
    callback requests that do not match a registered callback, each with one short response."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    set_allowed_hosts(app, LOOPBACK_HOSTS if hosts is None else hosts)
    server.before_request(_check_host)
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
    """A finite real number (not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


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

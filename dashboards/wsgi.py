"""For a WSGI server: ``DENSE_INSPECTOR_TOKEN=SECRET gunicorn dashboards.wsgi:server``.

Serves ``$DENSE_INSPECTOR_PATH`` (a checkpoint or an analysis folder) if set, else the demo.
It answers requests addressed to loopback names only, unless
``$DENSE_INSPECTOR_ALLOWED_HOSTS`` lists more, comma-separated (``*``: any host,
when a proxy in front checks them).

The app cannot see the address the WSGI server binds, so it asks for a token always:
``$DENSE_INSPECTOR_TOKEN`` (open ``/?token=SECRET`` once, or send ``Authorization: token SECRET``);
without one it refuses to start, unless ``$DENSE_INSPECTOR_NO_AUTH=1`` says that something in
front (a proxy that authenticates, a loopback-only bind) keeps strangers out.
"""

from __future__ import annotations

import os

from dashboards.launch import app_for_path
from dashboards.security import NO_AUTH_ENV, TOKEN_ENV, allowed_hosts, auth_token, set_allowed_hosts, set_token
from inspector.errors import InspectorError

_no_auth = os.environ.get(NO_AUTH_ENV, "") == "1"
_token = os.environ.get(TOKEN_ENV) or None
if _token is None and not _no_auth:  # before minutes of analysis, not after
    raise InspectorError(
        f"dashboards.wsgi serves whoever reaches the WSGI server: set ${TOKEN_ENV} to a secret "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))') and open /?token=SECRET, "
        f"or set {NO_AUTH_ENV}=1 when a proxy in front authenticates"
    )
if _token is not None and _no_auth:
    raise InspectorError(f"${TOKEN_ENV} and ${NO_AUTH_ENV}=1 contradict each other; set one of them")

app = app_for_path(os.environ.get("DENSE_INSPECTOR_PATH"), log=lambda _: None)
set_allowed_hosts(app, allowed_hosts("localhost", os.environ.get("DENSE_INSPECTOR_ALLOWED_HOSTS", "").split(",")))
set_token(app, auth_token("localhost", _token))
server = app.server

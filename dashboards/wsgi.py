"""For a WSGI server: ``gunicorn dashboards.wsgi:server``.

Serves ``$DENSE_INSPECTOR_PATH`` (a checkpoint or an analysis folder) if set, else the demo.
It answers requests addressed to loopback names only, unless
``$DENSE_INSPECTOR_ALLOWED_HOSTS`` lists more, comma-separated (``*``: any host,
when a proxy in front checks them).
"""

from __future__ import annotations

import os

from dashboards.launch import app_for_path
from dashboards.security import allowed_hosts, set_allowed_hosts

app = app_for_path(os.environ.get("DENSE_INSPECTOR_PATH"), log=lambda _: None)
set_allowed_hosts(app, allowed_hosts("localhost", os.environ.get("DENSE_INSPECTOR_ALLOWED_HOSTS", "").split(",")))
server = app.server

"""For a WSGI server: ``gunicorn dashboards.wsgi:server``.

Serves ``$DENSE_INSPECTOR_PATH`` (a checkpoint or an analysis folder) if set, else the demo.
"""

from __future__ import annotations

import os

from dashboards.launch import app_for_path

app = app_for_path(os.environ.get("DENSE_INSPECTOR_PATH"), log=lambda _: None)
server = app.server

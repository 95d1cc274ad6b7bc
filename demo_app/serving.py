"""Serve a Flask app with werkzeug's threaded server, quietly, stopping on SIGTERM."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from flask import Flask


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(app: Flask, host: str, port: int, banner: str) -> int:
    """Serve until SIGINT or SIGTERM (also as PID 1 in a container); returns an exit code."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = make_server(host, port, app, threaded=True)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"{banner} on http://{host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

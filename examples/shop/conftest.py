# conftest.py
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server

from shop import create_app


def services():
    """Fake pricing and inventory services, on one server."""
    app = Flask("services")

    @app.get("/v1/prices/<item>")
    def price(item):
        return {"item": item, "amount": 1999}

    @app.get("/v1/stock/<item>")
    def stock(item):
        return {"item": item, "count": 3}

    return app


@pytest.fixture(scope="session")
def chaos_proxy_upstream():
    server = make_server("127.0.0.1", 0, services(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()


@pytest.fixture
def web(chaos_proxy):
    # both services through the chaos proxy
    urls = {"PRICING_URL": chaos_proxy.url, "INVENTORY_URL": chaos_proxy.url}
    return create_app(urls).test_client()

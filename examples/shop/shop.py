# shop.py
"""A product page from two upstream services: pricing and inventory.

Pricing got a fallback after last year's incident (the page shows without a price);
inventory has retries but no fallback: when it is down, the page is a 500.
"""

import requests
from flask import Flask

TIMEOUT = 1.5  # seconds per attempt


def fetch(url, attempts=2):
    """GET a JSON document, retrying once when the call fails."""
    for attempt in range(attempts):
        try:
            answer = requests.get(url, timeout=TIMEOUT)
            answer.raise_for_status()
            return answer.json()
        except (requests.RequestException, ValueError):
            if attempt == attempts - 1:
                raise


def create_app(config):
    app = Flask(__name__)
    app.config.update(config)

    @app.get("/products/<item>")
    def product(item):
        try:
            price = fetch(f"{app.config['PRICING_URL']}/v1/prices/{item}")
        except (requests.RequestException, ValueError):
            return {"item": item, "price": None, "in_stock": None}  # shown without a price
        stock = fetch(f"{app.config['INVENTORY_URL']}/v1/stock/{item}")  # no fallback
        return {"item": item, "price": price["amount"], "in_stock": stock["count"] > 0}

    return app

"""The fake weather service the demo calls: deterministic forecasts, fast and quiet.

    python -m chaosproxy.demo_app.upstream --port 5001

``GET /v1/forecast/<city>`` answers the same JSON for the same city every time (derived
from a hash of the name), ``GET /healthz`` answers 200. Requests are not logged.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from datetime import date, timedelta
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

CONDITIONS = ("sunny", "partly cloudy", "cloudy", "rain", "showers", "thunderstorms", "snow", "fog")
CITY = re.compile(r"^[a-z][a-z-]{0,39}$")
#: Forecasts are dated from this day, so answers never change with the clock.
EPOCH = date(2026, 1, 1)
DAYS = 5


def _numbers(city: str) -> bytes:
    return hashlib.sha256(city.encode()).digest()


def forecast(city: str) -> dict[str, Any]:
    """The forecast for ``city`` (lower-case letters and dashes): same city, same answer."""
    digest = _numbers(city)
    base = digest[0] % 35 - 5  # -5..29 °C
    current = {
        "temp_c": round(base + digest[1] % 10 / 10, 1),
        "conditions": CONDITIONS[digest[2] % len(CONDITIONS)],
        "wind_kph": digest[3] % 60,
        "humidity": 30 + digest[4] % 65,
    }
    daily = []
    for day in range(DAYS):
        swing = digest[5 + day] % 8
        low = base - 4 + digest[10 + day] % 5
        daily.append(
            {
                "date": (EPOCH + timedelta(days=day)).isoformat(),
                "min_c": low,
                "max_c": low + 3 + swing,
                "conditions": CONDITIONS[digest[15 + day] % len(CONDITIONS)],
            }
        )
    return {"city": city, "units": "metric", "current": current, "daily": daily}


def create_upstream() -> Flask:
    """The fake weather service as a Flask app."""
    app = Flask("chaosproxy.demo_app.upstream")

    @app.get("/v1/forecast/<city>")
    def get_forecast(city: str) -> ResponseReturnValue:
        name = city.lower()
        if not CITY.match(name):
            return jsonify(error="unknown city", city=city), 404
        return jsonify(forecast(name))

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify(status="ok")

    return app


def main(argv: list[str] | None = None) -> int:
    from chaosproxy.demo_app.serving import serve

    parser = argparse.ArgumentParser(
        prog="python -m chaosproxy.demo_app.upstream", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    return serve(create_upstream(), args.host, args.port, "fake weather upstream")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

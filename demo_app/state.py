"""The demo app's state: the client, its breaker, metrics, traffic and the proxy's control."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chaosproxy.demo_app.assessment import Assessments
from chaosproxy.demo_app.metrics import Metrics
from chaosproxy.demo_app.proxyctl import ProxyControl
from chaosproxy.demo_app.traffic import Traffic
from chaosproxy.demo_app.weather import CityNotFound, Unavailable, WeatherClient, transitions


@dataclass
class DemoState:
    """Everything one app instance owns (kept in ``app.extensions["chaosdemo"]``)."""

    client: WeatherClient
    metrics: Metrics
    proxy: ProxyControl
    traffic: Traffic
    assessments: Assessments = field(default_factory=lambda: Assessments(None))

    def lookup(
        self, city: str, client: WeatherClient | None = None, *, record: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """One forecast lookup as (HTTP status, JSON body), recorded in the metrics unless
        ``record`` is false; by the app's client unless ``client`` is given."""
        started = time.perf_counter()
        metrics = self.metrics if record else None
        try:
            result = (client or self.client).forecast(city)
        except CityNotFound as exc:
            return 404, {"error": "unknown city", "city": city, "upstream_status": exc.status}
        except Unavailable as exc:
            if metrics is not None:
                metrics.record("error", time.perf_counter() - started)
            return 503, {
                "error": "weather service unavailable and nothing cached",
                "reason": exc.reason,
                "city": city,
                "attempts": exc.attempts,
            }
        elapsed = time.perf_counter() - started
        if metrics is not None:
            metrics.record(result.outcome, elapsed)
        body: dict[str, Any] = {
            "city": city,
            "source": result.source,
            "outcome": result.outcome,
            "attempts": result.attempts,
            "elapsed_ms": round(elapsed * 1000, 1),
            "forecast": result.data,
        }
        if result.source == "cache":
            body["age_s"] = round(result.age or 0.0, 3)
            body["reason"] = result.reason
        return 200, body

    def breaker_status(self) -> dict[str, Any]:
        breaker = self.client.breaker
        return {
            "state": breaker.current_state,
            "fail_counter": breaker.fail_counter,
            "fail_max": breaker.fail_max,
            "reset_timeout": breaker.reset_timeout,
            "enabled": self.client.settings.breaker,
            "transitions": transitions(breaker),
        }

    def status(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            "breaker": self.breaker_status(),
            "proxy": self.proxy.status(),
            "upstream_url": self.client.base_url,
            "settings": self.client.settings.as_dict(),
            "traffic": self.traffic.state(),
            "cache": {"cities": self.client.cached_cities()},
            **self.metrics.snapshot(),
        }

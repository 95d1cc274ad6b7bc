"""Run the demo app: ``python -m demo_app --port 5000 --upstream URL --admin URL``."""

from __future__ import annotations

import argparse
import os

from chaosproxy.demo_app import create_app
from chaosproxy.demo_app.serving import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--upstream", help="where forecasts come from (the proxy's URL)")
    parser.add_argument("--admin", help="chaosproxy's control API URL")
    parser.add_argument("--traffic", action="store_true", help="start the built-in traffic")
    parser.add_argument(
        "--assess-upstream", help="the real upstream, for the dashboard's assessment button"
    )
    args = parser.parse_args(argv)
    config: dict[str, object] = {}
    if args.upstream:
        config["UPSTREAM_URL"] = args.upstream
    if args.admin:
        config["PROXY_ADMIN_URL"] = args.admin
    if args.assess_upstream:
        config["ASSESS_UPSTREAM_URL"] = args.assess_upstream
    if args.traffic:
        config["TRAFFIC_AUTOSTART"] = True
    token = os.environ.get("CHAOSPROXY_ADMIN_TOKEN")
    if token and not os.environ.get("DEMO_PROXY_ADMIN_TOKEN"):
        config["PROXY_ADMIN_TOKEN"] = token
    return serve(create_app(config), args.host, args.port, "demo app and dashboard")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

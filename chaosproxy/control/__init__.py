"""The control plane: the admin HTTP API (scenario, phases, pause, stats, metrics,
decisions, health) served beside the proxy on loopback, and its one client.

``server`` (admin address, token policy, body limits) serves ``routes`` (one handler per
endpoint, answering ``documents``) over ``http`` (a small HTTP/1.1 server on asyncio and
h11, also under the throttle relay). A proxy is reached through the ``target.ControlTarget``
protocol, so control never imports the addon. ``client.ControlClient`` is what
``chaosproxy stats`` / ``explain`` and the demo app call the API with.
"""

"""The control plane: the admin HTTP API (scenario, phases, pause, stats, metrics,
decisions, health) served beside the proxy on loopback, and its client.
"""

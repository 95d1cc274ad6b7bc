"""Testing with chaosproxy: the Python API (:class:`~chaosproxy.testing.api.ChaosProxy`),
the pytest plugin (fixtures and markers) and the resilience oracle (what the client did).
"""

"""``chaosproxy assess``: learn a client's resilience policy from what the proxy saw.

``model`` (the Assessment and its JSON), ``experiments`` (the battery), ``infer`` (pure
inference), ``runner`` (drives the proxy and the trigger), ``expect`` (the CI gate);
``card`` and ``html`` show the result. Importing this package imports no mitmproxy.
"""

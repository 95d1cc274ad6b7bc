"""The core: scenario model, YAML source, units, the engine that decides, the decision log.

Pure Python. Nothing here imports mitmproxy, Flask or an asyncio server: the engine takes
a small description of a request and returns the chosen rule and its faults, so it is
tested without sockets, and the same code answers ``chaosproxy explain``.
"""

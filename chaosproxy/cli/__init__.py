"""The ``chaosproxy`` command line, one module per subcommand.

``main`` builds the parser and is the entry point (``main(argv)``, ``python -m
chaosproxy.cli.main``); ``run``, ``validate``, ``explain``, ``list``, ``stats``, ``demo``
and ``schema`` each add their own subparser (``add_parser``) and carry out the command
(``command(args)`` returns the exit code: 0 ok, 1 failed, 2 usage); ``common`` holds what
they share: messages (``chaosproxy: ...`` on stderr), located scenario errors, and calls
to a running proxy's control API through ``chaosproxy.control.client``. Heavy imports
(mitmproxy, the demo, rich) happen inside the command that needs them.
"""

"""``python -m chaosproxy.cli``: the ``chaosproxy`` command."""

from __future__ import annotations

import sys

from chaosproxy.cli.main import main

sys.exit(main())

"""Only the mitmproxy addons a proxy runs are imported (``chaosproxy run``'s lean start).

Importing ``mitmproxy.addons`` imports all ~36 default addons (the onboarding app's Flask,
LDAP proxy auth, ...). The package is registered without running its ``__init__``, so the
lean set imports alone; the first use of anything else from the package loads it whole,
as usual. It must be applied before anything imports ``mitmproxy.addons``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from typing import Any

from chaosproxy.proxy_addons._internals import Patch

PACKAGE = "mitmproxy.addons"


def check() -> str | None:
    if PACKAGE in sys.modules and not _is_deferred(sys.modules[PACKAGE]):
        return f"{PACKAGE} was imported already"
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return f"{PACKAGE} is not a package"
    # (find_spec of a submodule would import the package: look in its folder instead)
    if (
        importlib.machinery.PathFinder.find_spec("proxyserver", spec.submodule_search_locations)
        is None
    ):
        return f"{PACKAGE}.proxyserver does not exist"
    return None


def _is_deferred(module: Any) -> bool:
    return "__getattr__" in vars(module) and getattr(module, "_chaosproxy", False)


def apply(_: Any = None) -> None:
    """Register ``mitmproxy.addons`` without importing every default addon."""
    if PACKAGE in sys.modules:
        return  # deferred already (check refuses a real import)
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.loader is not None
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        submodule = f"{spec.name}.{name}"
        if importlib.util.find_spec(submodule) is not None:  # `from mitmproxy.addons import x`
            return importlib.import_module(submodule)
        delattr(module, "__getattr__")
        loader.exec_module(module)  # the real __init__: every default addon
        return getattr(module, name)

    setattr(module, "__getattr__", __getattr__)  # noqa: B010 - a module-level __getattr__
    module._chaosproxy = True  # type: ignore[attr-defined]
    sys.modules[PACKAGE] = module
    setattr(sys.modules["mitmproxy"], "addons", module)  # noqa: B010 - as an import would


PATCH = Patch(
    name="lazy_default_addons",
    target=f"{PACKAGE} (its __init__, which imports every default addon)",
    check=check,
    apply=apply,
    fallback="every default addon is imported (slower start, more memory)",
)

"""Option reads without copies of plain values.

mitmproxy reads a few options per request (body size limits, header validation, ...);
each read of ``_Option.current()`` deep-copies the value, twice. A value of an immutable
type (None, bool, int, float, str, bytes) is returned as it is, which is what those copies
return; any other value is copied as before.
"""

from __future__ import annotations

from typing import Any

from chaosproxy.proxy_addons._internals import Patch, missing_attributes

#: Types whose deep copy is the value itself.
_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes})


def check() -> str | None:
    from mitmproxy import optmanager

    problem = missing_attributes(optmanager, "_Option", "unset")
    if problem:
        return problem
    option = optmanager._Option
    problem = missing_attributes(option, "current")
    if problem:
        return problem
    probe = option("probe", int, 3, "", None)
    if not hasattr(probe, "value") or not hasattr(probe, "_default"):
        return "_Option instances have no value or _default"
    if probe.current() != 3:
        return "_Option.current() no longer returns the default of an unset option"
    return None


def applied() -> bool:
    from mitmproxy import optmanager

    return bool(getattr(optmanager._Option.current, "_chaosproxy", False))


def apply(_: Any = None) -> None:
    from mitmproxy import optmanager

    option = optmanager._Option
    copying = option.current
    if applied():
        return
    unset = optmanager.unset

    def current(self: optmanager._Option) -> Any:
        value = self.value
        if value is unset:
            value = self._default
        if type(value) in _IMMUTABLE:
            return value
        return copying(self)

    current._chaosproxy = True  # type: ignore[attr-defined]
    option.current = current  # type: ignore[method-assign]


PATCH = Patch(
    name="option_reads",
    target="mitmproxy.optmanager._Option.current",
    check=check,
    apply=apply,
    fallback="every option read deep-copies its value (slower)",
)

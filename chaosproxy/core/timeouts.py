"""Upstream connect and read timeouts (``--upstream-timeout``), parsed without mitmproxy."""

from __future__ import annotations

from dataclasses import dataclass

from chaosproxy.core.units import parse_duration

#: Defaults of ``--upstream-timeout``: seconds to connect, seconds to the answer's head.
DEFAULT_CONNECT = 10.0
DEFAULT_READ = 60.0


@dataclass(frozen=True)
class Timeouts:
    """Upstream connect and read timeouts in seconds (None: none)."""

    connect: float | None = DEFAULT_CONNECT
    read: float | None = DEFAULT_READ

    @staticmethod
    def parse(text: str) -> Timeouts:
        """``30s`` (both), ``connect=5s,read=2m`` (either or both; the other keeps its
        default), ``off`` (none). Durations as in scenarios (``500ms``, ``30s``, ``2m``)."""
        text = text.strip()
        if text.lower() in ("off", "none"):
            return Timeouts(None, None)

        def seconds(value: str) -> float:
            found = parse_duration(value.strip())
            if not found > 0:
                raise ValueError(f"{value.strip()!r} must be above 0 (or 'off' for no timeout)")
            return found

        if "=" not in text:
            both = seconds(text)
            return Timeouts(both, both)
        values: dict[str, float | None] = {"connect": DEFAULT_CONNECT, "read": DEFAULT_READ}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in values:
                raise ValueError(
                    f"{part.strip()!r}: write DURATION, or connect=DURATION,read=DURATION"
                )
            values[key] = None if value.strip().lower() == "off" else seconds(value)
        return Timeouts(values["connect"], values["read"])

    def describe(self) -> str:
        def one(value: float | None) -> str:
            return "off" if value is None else f"{value:g}s"

        return f"connect {one(self.connect)}, read {one(self.read)}"

    @staticmethod
    def of(value: str | float | Timeouts | None) -> Timeouts:
        """From the Python API: None (the defaults), seconds (both), a text for
        :meth:`parse`, or a Timeouts."""
        if value is None:
            return Timeouts()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not value > 0:
                raise ValueError(f"upstream_timeout {value!r} must be above 0 (or 'off')")
            return Timeouts(float(value), float(value))
        if isinstance(value, str):
            return Timeouts.parse(value)
        raise TypeError(f"upstream_timeout {value!r}: give seconds, a text such as '30s', or None")

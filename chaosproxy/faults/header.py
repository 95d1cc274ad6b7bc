"""``header``: the upstream's answer arrives with some headers changed or missing."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from chaosproxy.core.fault import Fault, HeaderMap, HeaderName, Stage, Wire, register

#: Headers that frame the body: changing them would desynchronise the client's
#: connection, which is ``malformed``'s job (``truncate``), not this fault's.
FRAMING = frozenset({"content-length", "transfer-encoding"})


@register
class Header(Fault):
    """Change the upstream's answer's headers: ``set`` adds each one (replacing any of the
    same name, in any case), ``remove`` drops them. Status and body are left as they are.
    A missing Content-Type, a wrong Cache-Control, a CORS header gone."""

    type: Literal["header"] = "header"
    set: HeaderMap = Field(
        default_factory=dict, description="name: value, replacing the answer's header of that name"
    )
    remove: tuple[HeaderName, ...] = Field(
        (), description="names of headers to drop from the answer (any case)"
    )

    stages: ClassVar[tuple[Stage, ...]] = (Stage.RESPONSE,)

    @model_validator(mode="after")
    def _something_to_change(self) -> Header:
        if not self.set and not self.remove:
            raise ValueError("give set (name: value) or remove (a list of names), or both")
        named = [n.lower() for n in (*self.set, *self.remove)]
        framing = sorted({n for n in named if n in FRAMING})
        if framing:
            raise ValueError(
                f"{', '.join(framing)} frames the body and cannot be changed here; "
                "use malformed (mode: truncate) to break the framing"
            )
        both = sorted({n for n in named if named.count(n) > 1})
        if both:
            raise ValueError(f"{', '.join(both)} is named twice (names compare in any case)")
        return self

    async def apply(self, wire: Wire) -> None:
        response = wire.response
        if response is None:
            return
        headers = response.headers
        replaced = {n.lower() for n in (*self.set, *self.remove)}
        for name in [n for n in headers if n.lower() in replaced]:
            del headers[name]
        for name, value in self.set.items():
            headers[name] = value

    def describe(self) -> str:
        parts = []
        if self.set:
            parts.append("set " + ", ".join(self.set))
        if self.remove:
            parts.append("remove " + ", ".join(self.remove))
        return "header " + "; ".join(parts)

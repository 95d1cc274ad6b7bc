"""``latency``: hold the request before it goes upstream, or the answer before it goes back."""

from __future__ import annotations

import abc
import math
import random
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaosproxy.core.fault import (
    MAX_DELAY,
    Duration,
    Fault,
    On,
    Stage,
    Wire,
    check_delay,
    register,
)
from chaosproxy.core.units import format_duration

#: z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408


class _Distribution(BaseModel, abc.ABC):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @abc.abstractmethod
    def upper_bound(self) -> float:
        """A value the samples rarely exceed, for the absurd-delay check."""

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> float:
        """Draw one delay in seconds."""


class Normal(_Distribution):
    """Gaussian around ``mean`` with ``stddev``; negative draws become 0."""

    kind: Literal["normal"]
    mean: Duration
    stddev: Duration

    def upper_bound(self) -> float:
        return self.mean + 3 * self.stddev

    def sample(self, rng: random.Random) -> float:
        return rng.gauss(self.mean, self.stddev)

    def __str__(self) -> str:
        return f"normal(mean {format_duration(self.mean)}, sd {format_duration(self.stddev)})"


class Lognormal(_Distribution):
    """Long-tailed, as real latencies are: half the draws below ``median``, 1 % above ``p99``."""

    kind: Literal["lognormal"]
    median: Duration
    p99: Duration

    @model_validator(mode="after")
    def _p99_above_median(self) -> Lognormal:
        if self.median <= 0:
            raise ValueError("median must be above 0")
        if self.p99 < self.median:
            raise ValueError(
                f"p99 ({format_duration(self.p99)}) must not be below the median "
                f"({format_duration(self.median)})"
            )
        return self

    def upper_bound(self) -> float:
        return self.p99

    def sample(self, rng: random.Random) -> float:
        sigma = math.log(self.p99 / self.median) / _Z99
        return rng.lognormvariate(math.log(self.median), sigma)

    def __str__(self) -> str:
        return f"lognormal(median {format_duration(self.median)}, p99 {format_duration(self.p99)})"


class Uniform(_Distribution):
    """Any value between ``min`` and ``max``, equally likely."""

    kind: Literal["uniform"]
    min: Duration
    max: Duration

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.max < self.min:
            raise ValueError(
                f"max ({format_duration(self.max)}) must not be below min "
                f"({format_duration(self.min)})"
            )
        return self

    def upper_bound(self) -> float:
        return self.max

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.min, self.max)

    def __str__(self) -> str:
        return f"uniform({format_duration(self.min)}..{format_duration(self.max)})"


Distribution = Annotated[Normal | Lognormal | Uniform, Field(discriminator="kind")]


@register
class Latency(Fault):
    """Delay by ``delay`` ± ``jitter`` (uniform), or by a draw from ``distribution``.

    The delay counts from the request's arrival at the proxy (``on: request``) or from the
    answer's arrival (``on: response``), so time spent queueing in the proxy is not added
    on top. Other flows never wait for it.
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["delay"]}, {"required": ["distribution"]}]}
    )

    type: Literal["latency"] = "latency"
    stages: ClassVar[tuple[Stage, ...]] = (Stage.REQUEST, Stage.RESPONSE)
    passes_on: ClassVar[bool] = True
    delay: Duration | None = None
    jitter: Duration = 0.0
    distribution: Distribution | None = None
    on: On = Stage.REQUEST
    allow_long: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Latency:
        if (self.delay is None) == (self.distribution is None):
            raise ValueError("give either delay (with optional jitter) or distribution")
        if self.distribution is not None and self.jitter:
            raise ValueError("jitter goes with delay; a distribution has its own spread")
        if self.delay is not None and self.jitter > self.delay:
            raise ValueError(
                f"jitter ({format_duration(self.jitter)}) is larger than delay "
                f"({format_duration(self.delay)}): draws below zero would all become 0; "
                "make jitter at most the delay, or use a distribution"
            )
        upper = self.distribution.upper_bound() if self.distribution else self.delay or 0.0
        check_delay(upper + self.jitter, "delay", self.allow_long)
        return self

    @property
    def stage(self) -> Stage:
        return self.on

    def sample(self, rng: random.Random | None) -> float:
        """The delay for one flow; ``rng`` is only used when there is randomness."""
        if self.distribution is not None:
            assert rng is not None
            value = self.distribution.sample(rng)
        else:
            value = self.delay or 0.0
            if self.jitter:
                assert rng is not None
                value += rng.uniform(-self.jitter, self.jitter)
        limit = math.inf if self.allow_long else MAX_DELAY
        return min(max(value, 0.0), limit)

    @property
    def random(self) -> bool:
        return self.distribution is not None or bool(self.jitter)

    async def apply(self, wire: Wire) -> None:
        delay = self.sample(wire.rng if self.random else None)
        if self.on is Stage.RESPONSE and wire.response is not None:
            start = wire.response.arrival
        else:
            start = wire.arrival
        await wire.sleep_until(start + delay)

    def describe(self) -> str:
        if self.distribution is not None:
            text = f"latency {self.distribution}"
        else:
            text = f"latency {format_duration(self.delay or 0.0)}"
            if self.jitter:
                text += f"±{format_duration(self.jitter)}"
        return text + (" on response" if self.on is Stage.RESPONSE else "")

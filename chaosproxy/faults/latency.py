"""``latency``: hold the request before it goes upstream, or the answer before it goes back."""

from __future__ import annotations

import abc
import bisect
import itertools
import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from chaosproxy.core.fault import (
    MAX_DELAY,
    Duration,
    Fault,
    On,
    Stage,
    StrictScalars,
    Wire,
    check_delay,
    register,
)
from chaosproxy.core.units import format_duration

#: z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408


class _Distribution(StrictScalars, abc.ABC):
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


#: The quantiles a latency may be given by: field name -> probability.
QUANTILES: dict[str, float] = {
    "p50": 0.50,
    "p75": 0.75,
    "p90": 0.90,
    "p95": 0.95,
    "p99": 0.99,
    "p999": 0.999,
}
_STANDARD = NormalDist()


@dataclass(frozen=True)
class QuantileFit:
    """A distribution through given quantiles: ``lognormal`` (the default) is a lognormal
    between each two neighbouring quantiles, i.e. ``ln(delay)`` is piecewise linear in the
    standard normal score of the probability; ``normal`` is the same with the delay itself.
    Beyond the outermost quantiles it goes on with its nearest piece. Two quantiles give
    exactly one lognormal (or normal) distribution; each given quantile is met exactly."""

    fit: str
    #: (normal score, ln(delay) or delay) of each given quantile, by probability
    points: tuple[tuple[float, float], ...]

    @classmethod
    def through(cls, quantiles: dict[float, float], fit: str) -> QuantileFit:
        scale = math.log if fit == "lognormal" else float
        points = tuple((_STANDARD.inv_cdf(p), scale(v)) for p, v in sorted(quantiles.items()))
        return cls(fit, points)

    def quantile(self, p: float) -> float:
        """The delay that a fraction ``p`` (0 < p < 1) of draws stay below."""
        z = _STANDARD.inv_cdf(p)
        zs = [point[0] for point in self.points]
        i = min(max(bisect.bisect_left(zs, z), 1), len(zs) - 1)
        (z0, x0), (z1, x1) = self.points[i - 1], self.points[i]
        x = x0 + (x1 - x0) * (z - z0) / (z1 - z0)
        return math.exp(x) if self.fit == "lognormal" else x

    def sample(self, rng: random.Random) -> float:
        """One draw: the quantile of one uniform number (inverse transform sampling)."""
        return self.quantile(min(max(rng.random(), 1e-12), 1 - 1e-12))


@register
class Latency(Fault):
    """Delay by ``delay`` ± ``jitter`` (uniform), or by a draw from ``distribution``.

    The delay counts from the request's arrival at the proxy (``on: request``) or from the
    answer's arrival (``on: response``), so time spent queueing in the proxy is not added
    on top. Other flows never wait for it.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["delay"]},
                {"required": ["distribution"]},
                {  # at least two quantiles
                    "anyOf": [
                        {"required": list(pair)} for pair in itertools.combinations(QUANTILES, 2)
                    ]
                },
            ],
            "dependentSchemas": {"fit": {"anyOf": [{"required": [q]} for q in QUANTILES]}},
        }
    )

    type: Literal["latency"] = "latency"
    stages: ClassVar[tuple[Stage, ...]] = (Stage.REQUEST, Stage.RESPONSE)
    passes_on: ClassVar[bool] = True
    delay: Duration | None = None
    jitter: Duration = 0.0
    distribution: Distribution | None = None
    p50: Duration | None = Field(None, description="half the delays are below this")
    p75: Duration | None = None
    p90: Duration | None = None
    p95: Duration | None = Field(None, description="5 % of the delays are above this")
    p99: Duration | None = None
    p999: Duration | None = Field(None, description="the 99.9th percentile")
    fit: Literal["lognormal", "normal"] = Field(
        "lognormal",
        description="the distribution through the quantiles: lognormal between each two "
        "(default), or normal",
    )
    on: On = Stage.REQUEST
    allow_long: bool = False
    _fit: QuantileFit | None = PrivateAttr(None)

    @property
    def quantiles(self) -> dict[float, float]:
        """The quantiles given (probability -> seconds)."""
        return {
            p: value for name, p in QUANTILES.items() if (value := getattr(self, name)) is not None
        }

    def model_post_init(self, context: Any) -> None:
        values = [v for _, v in sorted(self.quantiles.items())]
        increasing = all(v0 < v1 for v0, v1 in itertools.pairwise(values))
        if len(values) >= 2 and increasing and (self.fit == "normal" or values[0] > 0):
            self._fit = QuantileFit.through(self.quantiles, self.fit)

    @model_validator(mode="after")
    def _one_source(self) -> Latency:
        quantiles = self.quantiles
        sources = [self.delay is not None, self.distribution is not None, bool(quantiles)]
        if sum(sources) != 1:
            raise ValueError(
                "give one of delay (with optional jitter), distribution, or quantiles "
                "(p50, p95, p99...)"
            )
        if quantiles:
            self._check_quantiles(quantiles)
        elif "fit" in self.model_fields_set:
            raise ValueError("fit goes with quantiles (p50, p95, p99...)")
        if (self.distribution is not None or quantiles) and self.jitter:
            raise ValueError("jitter goes with delay; a distribution has its own spread")
        if self.delay is not None and self.jitter > self.delay:
            raise ValueError(
                f"jitter ({format_duration(self.jitter)}) is larger than delay "
                f"({format_duration(self.delay)}): draws below zero would all become 0; "
                "make jitter at most the delay, or use a distribution"
            )
        if self.distribution is not None:
            upper = self.distribution.upper_bound()
        elif quantiles:
            upper = max(quantiles.values())
        else:
            upper = self.delay or 0.0
        check_delay(upper + self.jitter, "delay", self.allow_long)
        return self

    def _check_quantiles(self, quantiles: dict[float, float]) -> None:
        names = {p: name for name, p in QUANTILES.items()}
        if len(quantiles) < 2:
            (p,) = quantiles
            raise ValueError(
                f"give at least two quantiles: {names[p]} alone does not say how the delays "
                "spread (e.g. p50 and p99)"
            )
        ordered = sorted(quantiles.items())
        for (p0, v0), (p1, v1) in itertools.pairwise(ordered):
            if v1 <= v0:
                raise ValueError(
                    f"{names[p1]} ({format_duration(v1)}) must be above {names[p0]} "
                    f"({format_duration(v0)})"
                )
        if self.fit == "lognormal" and ordered[0][1] <= 0:
            raise ValueError(f"{names[ordered[0][0]]} must be above 0 for a lognormal fit")

    @property
    def stage(self) -> Stage:
        return self.on

    def sample(self, rng: random.Random | None) -> float:
        """The delay for one flow; ``rng`` is only used when there is randomness."""
        if self.distribution is not None:
            assert rng is not None
            value = self.distribution.sample(rng)
        elif self._fit is not None:
            assert rng is not None
            value = self._fit.sample(rng)
        else:
            value = self.delay or 0.0
            if self.jitter:
                assert rng is not None
                value += rng.uniform(-self.jitter, self.jitter)
        limit = math.inf if self.allow_long else MAX_DELAY
        return min(max(value, 0.0), limit)

    @property
    def random(self) -> bool:
        return self.distribution is not None or self._fit is not None or bool(self.jitter)

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
        elif self.quantiles:
            names = {p: name for name, p in QUANTILES.items()}
            given = ", ".join(
                f"{names[p]} {format_duration(v)}" for p, v in sorted(self.quantiles.items())
            )
            text = f"latency {given}" + (" (normal fit)" if self.fit == "normal" else "")
        else:
            text = f"latency {format_duration(self.delay or 0.0)}"
            if self.jitter:
                text += f"±{format_duration(self.jitter)}"
        return text + (" on response" if self.on is Stage.RESPONSE else "")

"""With a POST trigger the battery asks whether a non-idempotent call is retried, and
whether its retries carry one Idempotency-Key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chaosproxy.testing.api import ChaosProxy
from chaosproxy.testing.assess.model import Assessment
from chaosproxy.testing.assess.runner import CallableTrigger, assess
from tests.support import running_upstream


def keyed_tenacity(base: str) -> Callable[[], Any]:
    """POST with one Idempotency-Key per order, retried by tenacity on a 5xx or an error."""
    import requests
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        retry_if_result,
        stop_after_attempt,
        wait_fixed,
    )

    retrying = Retrying(
        stop=stop_after_attempt(3),
        wait=wait_fixed(0.05),
        retry=retry_if_result(lambda r: r.status_code >= 500)
        | retry_if_exception_type(requests.RequestException),
    )

    def call() -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return retrying(
            lambda: requests.post(base + "/echo", data=b"{}", headers=headers, timeout=0.5)
        )

    return call


def urllib3_post(base: str) -> Callable[[], Any]:
    """urllib3's Retry leaves POST out of its allowed_methods: not retried."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(total=2, backoff_factor=0.05, status_forcelist=[503], raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return lambda: session.post(base + "/echo", data=b"{}", timeout=0.5)


def run(make: Callable[[str], Callable[[], Any]], upstream: str) -> Assessment:
    with ChaosProxy(upstream=upstream) as proxy:
        trigger = CallableTrigger(make(proxy.url), method="POST", timeout=30)
        return assess(proxy, trigger, quick=True, hang_cap_s=2)


@pytest.mark.parametrize(
    ("make", "retried", "keyed"),
    [(keyed_tenacity, True, True), (urllib3_post, False, False)],
    ids=["tenacity-keyed", "urllib3"],
)
def test_post_retried_and_keyed(
    make: Callable[[str], Callable[[], Any]], retried: bool, keyed: bool
) -> None:
    with running_upstream() as upstream:
        a = run(make, upstream.url)
    p = a.policy
    print(
        f"inferred: retries_non_idempotent={p.retries_non_idempotent}, "
        f"idempotency_key={p.idempotency_key}; configured: {retried}, {keyed}"
    )
    assert a.experiment("non_idempotent") is not None
    assert p.retries_non_idempotent is retried
    assert p.idempotency_key is keyed

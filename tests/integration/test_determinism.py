"""Same scenario and seed, same decisions: across proxy runs, whatever the client does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests


def statuses(make_proxy, seed: int, n: int = 90, workers: int = 1) -> list[int]:
    proxy = make_proxy("flaky", seed=seed)
    paths = [f"/item/{i}" for i in range(n)]

    def get(path: str) -> int:
        return requests.get(f"{proxy.url}{path}").status_code

    with ThreadPoolExecutor(workers) as pool:
        result = list(pool.map(get, paths))
    proxy.stop()
    return result


def test_same_seed_same_sequence_other_seed_other_sequence(make_proxy) -> None:
    first = statuses(make_proxy, seed=3)
    assert statuses(make_proxy, seed=3) == first
    assert statuses(make_proxy, seed=4) != first
    assert set(first) == {200, 503}


def test_concurrency_does_not_change_how_many_or_which_matches_fail(make_proxy) -> None:
    proxy = make_proxy("flaky", seed=21)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: requests.get(f"{proxy.url}/x").status_code, range(120)))
    concurrent = proxy.stats["rules"][0]["injected"]
    assert concurrent == statuses(make_proxy, seed=21, n=120).count(503)


def test_rate_matches_the_probability(make_proxy) -> None:
    result = statuses(make_proxy, seed=8, n=300, workers=4)
    assert 0.25 <= result.count(503) / len(result) <= 0.41

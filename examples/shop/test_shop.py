# test_shop.py
import pytest

from chaosproxy.core.scenario import shipped


def test_product_page(web):
    assert web.get("/products/42").status_code == 200


@pytest.mark.parametrize("scenario", [s.name for s in shipped()])
def test_product_page_under_every_shipped_scenario(web, chaos_proxy, scenario):
    chaos_proxy.apply(scenario, seed=3)
    assert web.get("/products/42").status_code == 200

"""The dashboard's token in a real headless Chromium (dash_duo): without it a 401 page, with a wrong
one a 403 page; opened with ``?token=`` the dashboard renders, the address bar loses the token, and
the HttpOnly cookie carries every later request (page reloads and callbacks)."""

from __future__ import annotations

import pytest
from dash.testing.wait import until

from dashboards.app import create_app
from dashboards.views import overview as overview_view
from dashboards.views import weights as weights_view
from tests.helpers import tiny_analysis

pytestmark = pytest.mark.browser
TOKEN = "browser-Token_42"


@pytest.fixture(scope="module")
def analysis():
    return tiny_analysis()[0]


def _body(duo) -> str:
    return duo.driver.find_element("css selector", "body").text


def test_the_dashboard_opens_with_its_token_and_only_with_it(dash_duo, analysis):
    dash_duo.start_server(create_app(analysis, token=TOKEN), navigate=False)
    base = dash_duo.server.url.rstrip("/")
    driver = dash_duo.driver

    driver.get(f"{base}/")
    until(lambda: "asks for its token" in _body(dash_duo), timeout=10)
    assert not driver.find_elements("css selector", "#react-entry-point")
    driver.get(f"{base}/?token=wrong")
    until(lambda: "wrong token" in _body(dash_duo), timeout=10)
    assert not driver.find_elements("css selector", "#react-entry-point")
    dash_duo.get_logs()  # the refused loads' "401"/"403" console lines: expected, and cleared here

    driver.get(f"{base}/?token={TOKEN}")
    dash_duo.wait_for_element(f"#{overview_view.PARAM_TABLE} td", timeout=20)
    assert "token" not in driver.current_url  # the redirect stripped it from the address bar
    (cookie,) = [c for c in driver.get_cookies() if c["name"].startswith("dense-inspector-token")]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["value"] != TOKEN
    assert driver.execute_script("return document.cookie") == ""  # no script on the page can read it

    # a reload without the token, and a callback: the cookie carries both
    driver.get(f"{base}/")
    dash_duo.wait_for_element(f"#{overview_view.PARAM_TABLE} td", timeout=20)
    for tab in dash_duo.find_elements(".tab"):
        if tab.text.strip() == "Weights":
            tab.click()
    dash_duo.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "fc1:", timeout=20)
    dash_duo.select_dcc_dropdown(f"#{weights_view.WEIGHT_LAYER}", value="fc2")
    dash_duo.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "fc2:", timeout=20)
    assert dash_duo.get_logs() == [], "the browser console reported errors"

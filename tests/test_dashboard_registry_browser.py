"""A view added as one file, in a real headless Chromium (dash_duo): its tab opens and its callback answers."""

from __future__ import annotations

import pytest

from dashboards import ids
from dashboards.app import create_app

# the registry test's throwaway view and its fixtures (a tiny MLP, the view file dropped into the package path)
from tests.test_dashboard_registry import probe_view, tiny  # noqa: F401

pytestmark = pytest.mark.browser


def test_a_view_dropped_into_the_package_opens_and_answers_in_the_browser(dash_duo, tiny, probe_view):  # noqa: F811
    analysis, model, data = tiny
    dash_duo.start_server(create_app(analysis, model=model, data=data))
    dash_duo.wait_for_element(f"#{ids.TABS}", timeout=20)
    tab = next(t for t in dash_duo.find_elements(f"#{ids.TABS} .tab") if t.text.strip() == "Widths")
    tab.click()
    dash_duo.wait_for_text_to_equal("#widths-text", "fc1 has 8 neurons", timeout=10)
    dash_duo.select_dcc_dropdown("#widths-layer", value="fc2")
    dash_duo.wait_for_text_to_equal("#widths-text", "fc2 has 3 neurons", timeout=10)
    assert dash_duo.get_logs() == [], "the browser console reported errors"

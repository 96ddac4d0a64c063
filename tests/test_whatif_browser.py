"""The What-if view in a real headless Chromium (dash_duo), on the regression y = 3 x2 - 2 x5.

Leaves a screenshot in docs/screenshots/whatif.png (the README shows it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from dash.testing.wait import until
from selenium.webdriver.common.keys import Keys

from dashboards import ids
from dashboards.app import create_app
from dashboards.views import importance as importance_view
from dashboards.views import whatif as whatif_view
from inspector.analysis import AnalysisOptions, analyze
from tests.test_whatif import _exact_linear, _regression_data

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
NUMBER = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"


@pytest.fixture
def started(dash_duo):
    X, y = _regression_data(200)
    model = _exact_linear()
    options = AnalysisOptions(
        sections=("parameters", "importance", "whatif"), methods=("integrated_gradients",), conductance=False, n_steps=8
    )
    analysis = analyze(model, (X, y), options=options)
    dash_duo.start_server(create_app(analysis, model=model, data=(X, y)))
    dash_duo.wait_for_element(f"#{ids.TABS}", timeout=20)
    for tab in dash_duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == "What-if":
            tab.click()
            break
    else:
        raise AssertionError("no What-if tab")
    dash_duo.wait_for_element(f"#{whatif_view.WHATIF_PD_FIG} .main-svg", timeout=20)
    return dash_duo, X


def test_pick_a_feature_and_move_a_slider(started):
    duo, X = started
    duo.wait_for_contains_text(f"#{whatif_view.WHATIF_PD_FIG} .gtitle", "What-if: x2", timeout=10)
    duo.select_dcc_dropdown(f"#{whatif_view.WHATIF_FEATURE}", value="x5")
    duo.wait_for_contains_text(f"#{whatif_view.WHATIF_PD_FIG} .gtitle", "What-if: x5", timeout=10)

    # the first slider edits the most important feature, x2; type a value into its input box
    box = duo.find_element(f"#{whatif_view.WHATIF_SLOTS[0]} input")
    assert duo.find_element(f"#{whatif_view.WHATIF_SLOTS[0]} label").text == "x2"
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("1.5", Keys.TAB)
    duo.wait_for_contains_text(f"#{whatif_view.WHATIF_CHANGED}", "x2 = ", timeout=10)
    changed = duo.find_element(f"#{whatif_view.WHATIF_CHANGED}").text
    value = float(re.search(rf"x2 = {NUMBER}", changed).group(1))
    assert abs(value - 1.5) <= (X[:, 2].max() - X[:, 2].min()) / 200  # the slider's step
    expected = 3 * value - 2 * float(X[0, 5])  # the model on sample 0 with x2 set to the slider's value
    until(lambda: "edited" in duo.find_element(f"#{whatif_view.WHATIF_RESULT}").text, timeout=10)
    result = duo.find_element(f"#{whatif_view.WHATIF_RESULT}").text
    shown = float(re.search(rf"edited {NUMBER}", result).group(1))
    original = float(re.search(rf"original {NUMBER}", result).group(1))
    assert shown == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert original == pytest.approx(3 * float(X[0, 2]) - 2 * float(X[0, 5]), rel=1e-4, abs=1e-4)
    assert np.isfinite(shown)
    SHOTS.mkdir(parents=True, exist_ok=True)
    duo.driver.set_window_size(1400, 1900)  # the curves and the live panel in one picture
    duo.driver.execute_script("window.scrollTo(0, 0)")
    duo.driver.save_screenshot(str(SHOTS / "whatif.png"))
    assert duo.get_logs() == [], "the browser console reported errors"


def test_the_sample_explorer_and_the_sliders_show_the_same_sample(started):
    duo, X = started
    for tab in duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == "Feature importance":
            tab.click()
    box = duo.find_element(f"#{ids.SAMPLE_INDEX}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("7", Keys.ENTER)
    duo.wait_for_contains_text(f"#{importance_view.SAMPLE_NOTE}", "Sample 7 of", timeout=10)
    assert "What-if tab's sliders" in duo.find_element(f"#{importance_view.SAMPLE_NOTE}").text
    for tab in duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == "What-if":
            tab.click()
    until(lambda: duo.find_element(f"#{whatif_view.WHATIF_SAMPLE}").get_attribute("value") == "7", timeout=10)
    expected = 3 * float(X[7, 2]) - 2 * float(X[7, 5])  # the model on sample 7, unedited
    until(lambda: re.search(rf"original {NUMBER}", duo.find_element(f"#{whatif_view.WHATIF_RESULT}").text), timeout=10)
    until(
        lambda: (
            abs(
                float(re.search(rf"original {NUMBER}", duo.find_element(f"#{whatif_view.WHATIF_RESULT}").text).group(1))
                - expected
            )
            < 1e-3 * max(1.0, abs(expected))
        ),
        timeout=10,
    )
    assert duo.get_logs() == [], "the browser console reported errors"

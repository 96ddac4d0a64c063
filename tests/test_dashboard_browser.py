"""The dashboard in a real headless Chromium (dash_duo), on the built-in demo.

Each test leaves a screenshot of its view in artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dash.testing.wait import until
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from dashboards import ids
from dashboards.app import create_app
from dashboards.views import activations as activations_view
from dashboards.views import dead as dead_view
from dashboards.views import importance as importance_view
from dashboards.views import neurons as neurons_view
from dashboards.views import overview as overview_view
from dashboards.views import pruning as pruning_view
from dashboards.views import weights as weights_view

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@pytest.fixture
def started(dash_duo, demo):
    analysis, ckpt, data = demo
    dash_duo.start_server(create_app(analysis, model=ckpt.model, data=data))
    dash_duo.wait_for_element(f"#{overview_view.ARCH_FIG} .main-svg", timeout=20)
    return dash_duo


def _open_tab(duo, label: str) -> None:
    for tab in duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == label:
            tab.click()
            return
    raise AssertionError(f"no tab {label!r}")


def _title(duo, graph_id: str) -> str:
    return duo.find_element(f"#{graph_id} .gtitle").text


def _shot(duo, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    duo.driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _no_console_errors(duo) -> None:
    assert duo.get_logs() == [], "the browser console reported errors"


def test_app_loads_without_console_errors(started):
    assert "64-128-64-10" in _title(started, overview_view.ARCH_FIG)
    assert started.find_element(f"#{overview_view.PARAM_TABLE}").text.count("×") >= 3
    assert started.find_elements(f"#{overview_view.FINDINGS} li")
    _shot(started, "overview")
    _no_console_errors(started)


def test_picking_a_layer_redraws_the_heatmap(started):
    _open_tab(started, "Weights")
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "fc1:", timeout=10)
    started.select_dcc_dropdown(f"#{weights_view.WEIGHT_LAYER}", value="fc2")
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "fc2: 64 × 128", timeout=10)
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_HIST} .gtitle", "fc2", timeout=10)
    _shot(started, "weights")
    _no_console_errors(started)


def test_sorting_by_norm_puts_the_strongest_neuron_on_top(started, demo):
    analysis = demo[0]
    norm = next(w for w in analysis.weights if w.layer == "fc1").neuron_norm
    _open_tab(started, "Weights")
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "fc1:", timeout=10)
    # Dash titles the page "Updating..." while callbacks are in flight: click once the view has settled
    until(lambda: started.driver.title != "Updating...", timeout=30)
    box = started.find_element(f"#{weights_view.WEIGHT_SORT} input")
    box.click()
    until(box.is_selected, timeout=10)
    # under a loaded machine the redraw can take a while: the wait is for correctness, not speed
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_HEATMAP} .gtitle", "rows sorted by norm", timeout=30)
    started.wait_for_contains_text(f"#{weights_view.WEIGHT_NOTE}", "sorted by incoming norm", timeout=30)
    top_label = started.find_elements(f"#{weights_view.WEIGHT_HEATMAP} .ytick text")[0].text
    assert top_label == str(int(np.argmax(norm)))
    plot = started.find_element(f"#{weights_view.WEIGHT_HEATMAP} .nsewdrag")
    ActionChains(started.driver).move_to_element(plot).perform()
    until(lambda: started.find_elements(f"#{weights_view.WEIGHT_HEATMAP} .hovertext"), timeout=10)
    hover = started.find_element(f"#{weights_view.WEIGHT_HEATMAP} .hovertext").text
    assert "(rank " in hover and "customdata" not in hover
    neuron, rank = int(hover.split()[1]), int(hover.split("(rank ")[1].split()[0])
    assert neuron == int(np.argsort(-norm, kind="stable")[rank])
    _shot(started, "weights-sorted")
    _no_console_errors(started)


def test_clicking_a_neuron_fills_the_neuron_view(started):
    _open_tab(started, "Weights")
    plot = started.wait_for_element(f"#{weights_view.WEIGHT_HEATMAP} .nsewdrag", timeout=10)
    # click a quarter of the way down the plot: some neuron of fc1 other than 0
    ActionChains(started.driver).move_to_element(plot).move_by_offset(0, -plot.size["height"] // 4).click().perform()

    # the tab opens showing its previous neuron (0) until the click's neuron arrives: wait for that one
    def clicked_neuron_shown() -> bool:
        try:
            text = started.find_element(f"#{neurons_view.NEURON_TITLE}").text
        except WebDriverException:  # not rendered yet, or re-rendered under us
            return False
        return text.startswith("Neuron ") and not text.startswith("Neuron 0 ")

    until(clicked_neuron_shown, timeout=10)
    title = started.find_element(f"#{neurons_view.NEURON_TITLE}").text
    assert " of fc1 " in title
    neuron = int(title.split()[1])
    assert 0 < neuron < 128
    started.wait_for_contains_text(f"#{neurons_view.NEURON_ACT} .gtitle", f"neuron {neuron} of fc1", timeout=10)
    assert f"neuron {neuron}" in _title(started, neurons_view.NEURON_DRIVERS)
    _shot(started, "neurons")
    _no_console_errors(started)


def test_switching_method_or_class_changes_the_importance_chart(started):
    _open_tab(started, "Feature importance")
    started.wait_for_contains_text(f"#{importance_view.IMP_BAR} .gtitle", "Integrated Gradients", timeout=10)
    started.select_dcc_dropdown(f"#{importance_view.IMP_METHOD}", value="Saliency")
    started.wait_for_contains_text(f"#{importance_view.IMP_BAR} .gtitle", "Saliency", timeout=10)
    started.wait_for_contains_text(f"#{importance_view.IMP_SANITY_TEXT}", "Saliency", timeout=10)
    started.select_dcc_dropdown(f"#{importance_view.IMP_CLASS}", value="class 3")
    started.wait_for_contains_text(f"#{importance_view.IMP_BAR} .gtitle", "class 3", timeout=10)
    started.wait_for_contains_text(f"#{importance_view.SAMPLE_FIG} .gtitle", "predicted", timeout=20)
    _shot(started, "importance")
    _no_console_errors(started)


def _press(duo, slider_id: str, *keys: str) -> None:
    """Move a slider with the keyboard, as a user tabbing to it would."""
    thumb = duo.wait_for_element(f"#{slider_id} [role=slider]", timeout=10)
    thumb.send_keys(*keys)


def test_threshold_slider_changes_the_nearly_dead_count(started):
    _open_tab(started, "Dead neurons")
    before = started.wait_for_element(f"#{dead_view.DEAD_COUNT}").text
    assert "fewer than 1% of samples" in before
    _press(started, dead_view.DEAD_THRESHOLD, Keys.END)  # the largest threshold, 20%
    started.wait_for_contains_text(f"#{dead_view.DEAD_COUNT}", "fewer than 20% of samples", timeout=10)
    after = started.find_element(f"#{dead_view.DEAD_COUNT}").text
    nearly_before = int(before.split(" and ")[1].split()[0])
    nearly_after = int(after.split(" and ")[1].split()[0])
    assert nearly_after > nearly_before
    _shot(started, "dead")
    _no_console_errors(started)


def test_pruning_slider_updates_the_preview(started):
    _open_tab(started, "Pruning")
    started.wait_for_contains_text(f"#{pruning_view.PRUNE_PREVIEW}", "50%", timeout=10)
    _press(started, pruning_view.PRUNE_SLIDER, Keys.END, Keys.ARROW_LEFT)  # 95%, then one level down
    started.wait_for_contains_text(f"#{pruning_view.PRUNE_PREVIEW}", "90%", timeout=10)
    assert "50%" not in started.find_element(f"#{pruning_view.PRUNE_PREVIEW}").text
    _shot(started, "pruning")
    _no_console_errors(started)


def test_activation_projection_view(started):
    _open_tab(started, "Activations")
    started.wait_for_contains_text(f"#{activations_view.ACT_PROJ} .gtitle", "fc1 activations", timeout=10)
    started.select_dcc_dropdown(f"#{activations_view.ACT_LAYER}", value="fc2")
    started.wait_for_contains_text(f"#{activations_view.ACT_PROJ} .gtitle", "fc2 activations", timeout=10)
    _shot(started, "activations")
    _no_console_errors(started)


# every shown title and subplot title of each drawn figure whose box meets the figure's mode bar's,
# and every subplot title that meets the figure's title
_MODEBAR_OVERLAPS = """
const out = [];
let plots = 0;
for (const plot of document.querySelectorAll('.js-plotly-plot')) {
  if (!plot.offsetParent) continue;  // a hidden panel
  const bar = plot.querySelector('.modebar');
  if (!bar) continue;
  plots += 1;
  const b = bar.getBoundingClientRect();
  for (const title of plot.querySelectorAll('.gtitle, .annotation-text')) {
    const r = title.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < b.right && b.left < r.right && r.top < b.bottom && b.top < r.bottom) {
      out.push([plot.closest('[id]').id, title.textContent, [b.left, b.top, b.right, b.bottom],
                [r.left, r.top, r.right, r.bottom]]);
    }
  }
  // the title, moved down out of the bar's band, must not land on the subplot titles either
  const main = plot.querySelector('.gtitle');
  if (main && main.getBoundingClientRect().width > 0) {
    const m = main.getBoundingClientRect();
    for (const note of plot.querySelectorAll('.annotation-text')) {
      const r = note.getBoundingClientRect();
      if (r.width > 0 && r.left < m.right && m.left < r.right && r.top < m.bottom && m.top < r.bottom) {
        out.push([plot.closest('[id]').id, main.textContent, note.textContent]);
      }
    }
  }
}
return [plots, out];
"""


def test_the_mode_bar_covers_no_title_on_any_tab(started):
    """Defect 8: the mode bar sat over long titles (the weight histogram's "stable rank · alpha")."""
    started.wait_for_contains_text(f"#{overview_view.ARCH_FIG} .gtitle", "64-128-64-10", timeout=20)
    checked = {}
    for label, ready in (
        ("Overview", f"#{overview_view.ARCH_FIG} .gtitle"),
        ("Weights", f"#{weights_view.WEIGHT_HIST} .gtitle"),
        ("Neurons", f"#{neurons_view.NEURON_ACT} .gtitle"),
        ("Dead neurons", f"#{dead_view.DEAD_COUNT}"),
        ("Feature importance", f"#{importance_view.IMP_BAR} .gtitle"),
        ("What-if", ".js-plotly-plot .gtitle"),
        ("Pruning", f"#{pruning_view.PRUNE_FIG} .gtitle"),
        ("Activations", f"#{activations_view.ACT_PROJ} .gtitle"),
    ):
        _open_tab(started, label)
        started.wait_for_element(ready, timeout=20)
        until(lambda: started.driver.title != "Updating...", timeout=30)
        plots, overlaps = started.driver.execute_script(_MODEBAR_OVERLAPS)
        assert plots > 0, label
        assert overlaps == [], f"{label}: the mode bar covers {overlaps}"
        checked[label] = plots
    # the title that the defect was found on is long enough to reach under the mode bar's columns
    _open_tab(started, "Weights")
    title = started.wait_for_element(f"#{weights_view.WEIGHT_HIST} .gtitle", timeout=20)
    assert "stable rank" in title.text
    assert sum(checked.values()) >= 12, checked
    _no_console_errors(started)

"""A 6-block BERT's dashboard in a real headless Chromium (dash_duo): the module tree on the
overview, and a layer found by typing part of its name into the grouped layer picker.

Leaves docs/screenshots/module-tree.png (the overview) for the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dash.testing.wait import until

import inspector
from dashboards import ids
from dashboards.app import create_app
from dashboards.views import dead as dead_view
from dashboards.views import neurons as neurons_view
from dashboards.views import overview as overview_view
from inspector.analysis import AnalysisOptions
from tests.models import padded_batches, tiny_bert

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
BLOCKS, WIDTH = 6, 1536
LAYER = "bert.encoder.layer.5.intermediate.dense"


@pytest.fixture
def bert_dashboard(dash_duo):
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=3, hidden_size=16, num_hidden_layers=BLOCKS, intermediate_size=WIDTH)
    batches = padded_batches(n_batches=2, batch_size=4, width=8, num_labels=3)
    analysis = inspector.analyze(
        model, batches, options=AnalysisOptions(sections=("parameters", "weights", "activations"))
    )
    dash_duo.start_server(create_app(analysis, model=model, data=batches))
    dash_duo.wait_for_element(f"#{overview_view.MODULE_TREE} .main-svg", timeout=30)
    return dash_duo


def _open_tab(duo, label: str) -> None:
    for tab in duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == label:
            tab.click()
            return
    raise AssertionError(f"no tab {label!r}")


def _bars(duo, graph_id: str) -> int:
    """How many bars Plotly drew in a graph (one SVG path per bar)."""
    return len(duo.find_elements(f"#{graph_id} .bars .point"))


def test_search_a_layer_by_name_and_see_its_1536_neurons(bert_dashboard):
    duo = bert_dashboard
    tree_title = duo.find_element(f"#{overview_view.MODULE_TREE} .gtitle").text
    assert tree_title.startswith("Module tree") and "dense layers" in tree_title and "embeddings" in tree_title
    DOCS.mkdir(parents=True, exist_ok=True)
    duo.driver.save_screenshot(str(DOCS / "module-tree.png"))

    _open_tab(duo, "Dead neurons")
    duo.wait_for_element(f"#{dead_view.DEAD_STRIP} .main-svg", timeout=20)
    duo.find_element(f"#{dead_view.DEAD_LAYER}").click()
    search = duo.wait_for_element(".dash-dropdown-search", timeout=10)
    search.send_keys("layer.5.interm")
    until(lambda: len(duo.find_elements(".dash-dropdown-option")) >= 1, timeout=10)
    options = [o for o in duo.find_elements(".dash-dropdown-option") if o.text.strip()]
    texts = [o.text for o in options]
    wanted = "bert.encoder.layer.5 › intermediate.dense"
    assert wanted in texts, texts
    assert not any("layer.4" in t and "›" in t for t in texts), texts  # the search narrowed the list
    next(o for o in options if o.text == wanted).click()
    duo.wait_for_contains_text(f"#{dead_view.DEAD_STRIP} .gtitle", LAYER, timeout=20)
    until(lambda: _bars(duo, dead_view.DEAD_STRIP) == WIDTH, timeout=10)

    _open_tab(duo, "Neurons")
    duo.wait_for_element(f"#{neurons_view.NEURON_ACT} .main-svg", timeout=20)
    duo.select_dcc_dropdown(f"#{ids.NEURON_LAYER}", value=wanted)
    duo.wait_for_text_to_equal(f"#{neurons_view.NEURON_WIDTH}", "0-1535 (1,536 neurons)", timeout=20)
    assert duo.find_element(f"#{ids.NEURON_INDEX}").get_attribute("max") == str(WIDTH - 1)
    assert duo.get_logs() == [], "the browser console reported errors"

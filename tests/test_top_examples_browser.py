"""The Neurons view in a real headless Chromium (dash_duo): pick a layer and a neuron of a tiny BERT, see its
top examples with the firing token highlighted. With DENSE_INSPECTOR_SCREENSHOT=PATH set, the view is also
saved as a PNG there (docs/images/neuron-top-examples.png for the README)."""

from __future__ import annotations

import os

import pytest
import torch

from dashboards import ids
from dashboards.app import create_app
from inspector.analysis import AnalysisOptions, analyze
from tests.models import tiny_bert

pytestmark = pytest.mark.browser

SENTENCES = (
    "the forecast for tomorrow will be heavy rain and wind on the coast",
    "expect clear skies and a warm sun over the city today",
    "a storm warning in the north with thunder and showers later",
    "cold morning fog and ice on the river then a dry evening",
    "the weekend will be humid with high temperature and light breeze",
    "snow in the south tomorrow and low degrees by the evening",
    "a flood warning for the river after heavy rain in the week",
    "the city will be dry and clear with a cold wind today",
)
WORDS = ["[PAD]", *sorted({w for s in SENTENCES for w in s.split()})]


def _batches() -> list[dict[str, torch.Tensor]]:
    index = {w: i for i, w in enumerate(WORDS)}
    rows = [[index[w] for w in s.split()] for s in SENTENCES]
    width = max(len(r) for r in rows)
    ids_ = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids_[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return [
        {"input_ids": ids_[i : i + 4], "attention_mask": mask[i : i + 4], "labels": torch.tensor([0, 1, 2, 0])}
        for i in range(0, len(rows), 4)
    ]


@pytest.fixture(scope="module")
def bert_analysis():
    model = tiny_bert(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_labels=3)
    options = AnalysisOptions(sections=("parameters", "weights", "activations"), top_k=8)
    return analyze(model, _batches(), options=options, vocabulary=WORDS)


def test_picking_a_neuron_shows_its_top_examples_with_the_firing_token(dash_duo, bert_analysis):
    layer = "bert.encoder.layer.1.intermediate.dense"
    top = bert_analysis.layer_top_examples(layer)
    neuron = int(top.most_selective(1)[0])
    firing = bert_analysis.top_examples(layer, neuron)[0].tokens[8]
    dash_duo.start_server(create_app(bert_analysis))
    dash_duo.wait_for_element(f"#{ids.TABS}", timeout=20)
    tab = next(t for t in dash_duo.find_elements(f"#{ids.TABS} .tab") if t.text.strip() == "Neurons")
    tab.click()
    dash_duo.wait_for_element(f"#{ids.NEURON_INDEX}", timeout=10)
    dash_duo.select_dcc_dropdown(f"#{ids.NEURON_LAYER}", value="bert.encoder.layer.1 › intermediate.dense")
    dash_duo.wait_for_text_to_equal("#neurons-width", f"0-{top.width - 1} ({top.width} neurons)", timeout=20)
    box = dash_duo.find_element(f"#{ids.NEURON_INDEX}")
    dash_duo.clear_input(box)
    box.send_keys(str(neuron), "\n")
    dash_duo.wait_for_text_to_equal(
        "#neurons-top-examples .top-summary",
        f"{top.summary[neuron]} (selectivity {top.selectivity[neuron]:.2f})",
        timeout=10,
    )
    marked = dash_duo.find_elements("#neurons-top-examples .firing-token")
    assert len(marked) == top.values.shape[1] and marked[0].text == firing
    shot = os.environ.get("DENSE_INSPECTOR_SCREENSHOT")
    if shot:
        dash_duo.driver.set_window_size(1300, 1100)
        dash_duo.driver.execute_script(
            "document.getElementById('neurons-top-examples').scrollIntoView(); window.scrollBy(0, -70)"
        )
        dash_duo.driver.save_screenshot(shot)
    assert dash_duo.get_logs() == [], "the browser console reported errors"

"""The Text view and the image maps in a real headless Chromium (dash_duo).

Screenshots: docs/screenshots/text-view.png and docs/screenshots/image-maps.png (for the README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dash.testing.wait import until

from dashboards import ids
from dashboards.app import create_app
from dashboards.views import importance as importance_view
from dashboards.views import text as text_view
from inspector import analyze
from tests.models import digits_images, padded_batches, tiny_bert
from tests.test_kinds_views import OPTIONS, SCRIPT_ID, SmallCNN

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def _open_tab(duo, label: str) -> None:
    for tab in duo.find_elements(f"#{ids.TABS} .tab"):
        if tab.text.strip() == label:
            tab.click()
            return
    raise AssertionError(f"no tab {label!r}")


def _spans(duo) -> list[tuple[str, float]]:
    rows = duo.driver.execute_script(
        f"return [...document.querySelectorAll('#{text_view.TEXT_TOKENS} span')].map(s => [s.textContent, s.title])"
    )
    return [(text, float(title)) for text, title in rows]


def _settled(duo) -> None:
    until(lambda: duo.driver.title != "Updating...", timeout=30)


def test_text_view_shows_each_samples_tokens_with_their_scores(dash_duo):
    pytest.importorskip("transformers")
    model = tiny_bert(num_labels=2, num_hidden_layers=1)
    batches = padded_batches(2, 4, 8, num_labels=2)
    batches[0]["input_ids"][0, 2] = SCRIPT_ID
    vocabulary = [f"w{i}" for i in range(50)]
    vocabulary[0] = "[PAD]"
    vocabulary[SCRIPT_ID] = "<script>"
    analysis = analyze(model, batches, vocabulary=vocabulary, options=OPTIONS)
    app = create_app(analysis, model=model, data=batches, vocabulary=vocabulary)
    probe = app.state.probe
    dash_duo.start_server(app)
    dash_duo.wait_for_element(f"#{ids.TABS}", timeout=20)
    _open_tab(dash_duo, "Text")
    dash_duo.wait_for_element(f"#{text_view.TEXT_TOKENS} span", timeout=20)

    def expected(i: int) -> list[tuple[str, float]]:
        mask = probe.mask(i)
        scores = probe.explain("integrated_gradients", i)[mask]
        return list(zip(np.array(probe.tokens(i))[mask], scores))

    shown = _spans(dash_duo)
    assert [t for t, _ in shown] == [t for t, _ in expected(0)] and "<script>" in [t for t, _ in shown]
    np.testing.assert_allclose([s for _, s in shown], [s for _, s in expected(0)], rtol=1e-5, atol=1e-12)
    dash_duo.wait_for_contains_text(f"#{text_view.TEXT_NOTE}", "Sample 0 of 8", timeout=10)
    dash_duo.driver.save_screenshot(str(SHOTS / "text-view.png"))

    _settled(dash_duo)
    dash_duo.select_dcc_dropdown(f"#{text_view.TEXT_SAMPLE}", value="sample 5")
    dash_duo.wait_for_contains_text(f"#{text_view.TEXT_NOTE}", "Sample 5 of 8", timeout=20)
    until(lambda: len(_spans(dash_duo)) == int(probe.mask(5).sum()), timeout=10)
    shown = _spans(dash_duo)
    assert [t for t, _ in shown] == [t for t, _ in expected(5)]
    np.testing.assert_allclose([s for _, s in shown], [s for _, s in expected(5)], rtol=1e-5, atol=1e-12)
    assert dash_duo.find_element(f"#{text_view.TEXT_TOP} .gtitle").text.startswith("Integrated Gradients: top")
    assert dash_duo.get_logs() == [], "the browser console reported errors"


def test_image_map_of_the_cnn_is_8x8(dash_duo):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images, labels = digits_images(48)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    analysis = analyze(model, data, options=OPTIONS)
    dash_duo.start_server(create_app(analysis, model=model, data=data))
    dash_duo.wait_for_element(f"#{ids.TABS}", timeout=20)
    _open_tab(dash_duo, "Feature importance")
    dash_duo.wait_for_element(f"#{importance_view.IMP_MAP} .hm", timeout=20)
    z = dash_duo.driver.execute_script(
        f"const z = document.querySelector('#{importance_view.IMP_MAP} .js-plotly-plot')._fullData[0].z;"
        "return Array.from(z, row => Array.from(row));"
    )
    m = analysis.importance.method("integrated_gradients")
    np.testing.assert_allclose(np.array(z, dtype=float), m.global_importance.reshape(8, 8), rtol=1e-6)
    dash_duo.wait_for_element(f"#{importance_view.SAMPLE_FIG} .hm", timeout=20)
    dash_duo.wait_for_contains_text(f"#{importance_view.SAMPLE_NOTE}", "predicted", timeout=20)
    _settled(dash_duo)
    dash_duo.driver.save_screenshot(str(SHOTS / "image-maps.png"))
    assert dash_duo.get_logs() == [], "the browser console reported errors"


@pytest.mark.parametrize("kind", ["cnn", "bert"])
def test_report_of_each_kind_opens_offline_with_every_figure_drawn(dash_duo, tmp_path, kind):
    from inspector.report import analysis_sections, write_report

    if kind == "bert":
        pytest.importorskip("transformers")
        batches = padded_batches(2, 4, 8, num_labels=2)
        batches[0]["input_ids"][0, 2] = SCRIPT_ID
        vocabulary = [f"w{i}" for i in range(50)]
        vocabulary[SCRIPT_ID] = "<script>"
        analysis = analyze(
            tiny_bert(num_labels=2, num_hidden_layers=1), batches, vocabulary=vocabulary, options=OPTIONS
        )
    else:
        torch.manual_seed(0)
        images, labels = digits_images(48)
        analysis = analyze(SmallCNN().eval(), (images, labels), options=OPTIONS)
    path = write_report(analysis, tmp_path / "report.html")
    n_figures = sum(1 for s in analysis_sections(analysis) for b in s.blocks if not isinstance(b, str))
    driver = dash_duo.driver
    driver.get(path.as_uri())
    dash_duo.wait_for_element("#importance .js-plotly-plot .main-svg", timeout=30)
    until(
        lambda: (
            driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") >= n_figures
        ),
        timeout=30,
    )
    assert driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == n_figures
    if kind == "bert":
        texts = driver.execute_script(
            "return [...document.querySelectorAll('#importance span.token')].map(s => s.textContent)"
        )
        assert "<script>" in texts  # shown as text, never run as markup
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))"
    )
    assert fetched == []
    assert dash_duo.get_logs() == []

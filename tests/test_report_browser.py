"""The HTML report in a real headless Chromium: it draws every figure offline, with no errors."""

from __future__ import annotations

import pytest

from inspector.render import write_report
from inspector.render.html import analysis_sections

pytestmark = pytest.mark.browser


def test_report_opens_offline_draws_every_figure_and_fetches_nothing(dash_duo, demo, tmp_path):
    analysis = demo[0]
    path = write_report(analysis, tmp_path / "report.html")
    n_figures = sum(1 for s in analysis_sections(analysis) for b in s.blocks if not isinstance(b, str))
    driver = dash_duo.driver
    driver.get(path.as_uri())
    dash_duo.wait_for_element("#activations .js-plotly-plot .main-svg", timeout=30)
    drawn = driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
    plots = driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
    assert plots == n_figures and drawn >= n_figures  # each plot draws at least one svg layer
    for section in ("summary", "architecture", "training", "weights", "dead", "importance", "pruning"):
        assert driver.find_element("css selector", f"#{section} h2").text
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))"
    )
    assert fetched == []
    assert dash_duo.get_logs() == []
    driver.save_screenshot(str(tmp_path / "report.png"))


def test_dashboard_download_is_the_same_report(demo):
    from dashboards.state import DashboardState
    from dashboards.views.overview import report_download
    from inspector.render import to_html

    analysis = demo[0]
    download = report_download(DashboardState.build(analysis))
    assert download["filename"].endswith(".html")
    strip = __import__("re").compile(r'<p class="meta">.*?</p>|id="fig-\d+"|"[0-9a-f-]{36}"')
    assert strip.sub("", download["content"]) == strip.sub("", to_html(analysis))

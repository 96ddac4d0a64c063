from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from inspector.analysis import Analysis, AnalysisOptions, analyze
from inspector.analysis.compare import compare
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.evaluation import EvalData
from inspector.models import MLPConfig, build_mlp
from inspector.render import format_for, to_html, to_markdown, write_report
from inspector.render.export import find_browser
from inspector.render.html import analysis_sections
from inspector.results import results_equal


@pytest.fixture(scope="module")
def analysis(demo) -> Analysis:
    return demo[0]


def test_markdown_holds_the_parameter_table(analysis):
    md = to_markdown(analysis)
    assert "| layer | inputs n | outputs m | weights | biases | formula | parameters |" in md
    assert "| fc1 | 64 | 128 | 8,192 | 128 | 128 × (64 + 1) | 8,320 |" in md
    assert "| total |  |  | 17,024 | 202 |  | 17,226 |" in md
    assert "## Dead ReLUs and saturation" in md and "## Feature importance" in md and "## Pruning" in md


def test_html_is_self_contained_with_every_section(analysis):
    text = to_html(analysis)
    ids = [s.id for s in analysis_sections(analysis)]
    assert ids == [
        "summary",
        "architecture",
        "training",
        "weights",
        "dead",
        "importance",
        "whatif",
        "pruning",
        "activations",
        "top-examples",  # a registered panel (inspector/figures/top_examples.py): after the built-in sections
    ]
    for section in ids:
        assert f'<section id="{section}">' in text and f'href="#{section}"' in text
    # no external resource in the page itself (plotly.js's own source mentions map-tile URLs it never
    # loads for these charts; the browser test checks that nothing is fetched)
    from plotly.offline import get_plotlyjs

    page = text.replace(get_plotlyjs(), "")
    assert len(page) < len(text) - 4_000_000  # plotly.js was inlined, once
    assert not re.findall(r'(?:src|href)\s*=\s*["\'](?:https?:)?//', page)
    assert "@media print" in text
    assert "8,320" in text and "128 × (64 + 1)" in text
    assert len(text.encode()) < 8_000_000  # plotly.js (about 4.8 MB) is most of it


def test_json_report_is_the_analysis(analysis, tmp_path):
    path = write_report(analysis, tmp_path / "a.json")
    assert results_equal(Analysis.load(path), analysis)


def test_format_comes_from_extension_or_flag(tmp_path):
    assert format_for(tmp_path / "r.md", None) == "md"
    assert format_for(tmp_path / "r.txt", "html") == "html"
    with pytest.raises(InspectorError, match="pass --format"):
        format_for(tmp_path / "r.txt", None)


def test_existing_report_needs_force_and_failure_leaves_nothing(analysis, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("keep")
    with pytest.raises(InspectorError, match="already exists; pass --force"):
        write_report(analysis, out)
    assert out.read_text() == "keep"
    import inspector.render.write as write

    def broken(_):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(write, "to_html", broken)
    with pytest.raises(RuntimeError):
        write_report(analysis, tmp_path / "new.html")
    assert sorted(os.listdir(tmp_path)) == ["r.html"]


def test_cli_bad_path_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pt: no such file" in err
    assert os.listdir(tmp_path) == []


def test_cli_report_from_analysis_folder(analysis, tmp_path, capsys):
    analysis.save(tmp_path / "a")
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "r.md")]) == 0
    assert "| fc2 | 128 | 64 |" in (tmp_path / "r.md").read_text()


def test_pdf_and_png_need_a_browser(analysis, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    with pytest.raises(InspectorError, match="need Chrome or Chromium"):
        write_report(analysis, tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()


@pytest.mark.browser
def test_pdf_and_png_with_chromium(analysis, tmp_path):
    try:
        find_browser()
    except InspectorError:
        pytest.skip("no Chrome or Chromium on this machine")
    pdf = write_report(analysis, tmp_path / "r.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
    pngs = sorted((tmp_path / "png").glob("*.png")) if write_report(analysis, tmp_path / "png", "png") else []
    n_figures = sum(1 for s in analysis_sections(analysis) for b in s.blocks if not isinstance(b, str))
    assert len(pngs) == n_figures and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def _planted_pair():
    torch.manual_seed(0)
    before = build_mlp(MLPConfig(10, (16,), 3))
    after = build_mlp(MLPConfig(10, (16,), 3))
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        before.fc1.bias[[7]] = -10.0  # dead before, revived after
        after.fc1.bias[[2, 9]] = -10.0  # alive before, dead after
        after.fc2.weight.mul_(2.0)
    return before, after


def test_comparison_finds_died_revived_and_weight_change():
    before, after = _planted_pair()
    X = np.random.default_rng(0).standard_normal((300, 10)).astype(np.float32)
    data = EvalData.from_arrays(X, np.arange(300) % 3)
    options = AnalysisOptions(sections=("parameters", "weights", "activations"))
    c = compare(analyze(before, data, options=options), analyze(after, data, options=options))
    fc1, fc2 = c.layers
    assert fc1.died.tolist() == [2, 9] and fc1.revived.tolist() == [7]
    assert fc2.relative_change == pytest.approx(1.0, rel=1e-6)  # W_b - W_a = W_a
    assert fc1.relative_change == 0.0
    np.testing.assert_allclose(fc2.change.values, np.abs(before.fc2.weight.detach().numpy()), rtol=1e-6)
    assert any("2 neurons died and 1 revived" in f.text for f in c.findings)


def test_comparison_of_two_snapshots_of_one_run(tmp_path, capsys):
    run = tmp_path / "run.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--hidden",
                "16",
                "--epochs",
                "6",
                "--patience",
                "0",
                "--snapshot-every",
                "3",
                "--out",
                str(run),
                "-q",
            ]
        )
        == 0
    )
    out = tmp_path / "cmp.md"
    assert main(["report", f"{run}@3", str(run), "--out", str(out)]) == 0
    md = out.read_text()
    assert f"`{run}@3`" in md and "| fc1 | 16×10 | 16×10 |" in md and "rank correlation" in md
    html_out = tmp_path / "cmp.html"
    assert main(["report", f"{run}@3", f"{run}@6", "--out", str(html_out)]) == 0
    assert "Per-layer differences" in html_out.read_text()
    assert main(["report", f"{run}@4", str(run), "--out", str(tmp_path / "x.md")]) == 1
    assert "no snapshot for epoch 4 (have: 3, 6)" in capsys.readouterr().err


# Names a checkpoint can carry (module names, CSV headers): Markdown and HTML that must stay text.
_HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "a|b",
    "**bold** _it_ [x](javascript:alert(1))",
    "`code`",
    "# heading",
    "1. item",
    "- item",
    "~~gone~~ $x$ &amp; \\",
    "two\nlines",
)
_MD_META = re.compile(r"(?<!\\)(?:\\\\)*[*_`\[\]|~$]|(?<!\\)<[A-Za-z/!?]|(?<!\\)&[A-Za-z#]")


def _md_unescape(text: str) -> str:
    """CommonMark's backslash escapes undone: what a renderer shows."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


@pytest.mark.parametrize("name", _HOSTILE)
def test_markdown_escape_renders_a_name_as_the_literal_text(name):
    from inspector.render.markdown import md_code, md_escape

    escaped = md_escape(name)
    assert "\n" not in escaped and _md_unescape(escaped) == name.replace("\n", " ")
    assert not _MD_META.search(escaped.replace("\\\\", ""))
    assert not re.match(r"\s*(?:[#>+=-]|\d+[.)])", escaped)  # cannot open a heading, quote or list
    code = md_code(name)
    fence = re.match(r"`+", code).group(0)
    assert code.endswith(fence) and fence not in code[len(fence) : -len(fence)]


def test_hostile_layer_and_feature_names_stay_text_in_markdown_and_html(analysis):
    import dataclasses
    import html as html_module

    evil = _HOSTILE[0] + "|" + _HOSTILE[2]
    layers = tuple(dataclasses.replace(p, layer=f"{evil}{i}") for i, p in enumerate(analysis.parameters.layers))
    hostile = dataclasses.replace(
        analysis,
        parameters=dataclasses.replace(analysis.parameters, layers=layers),
        weights=tuple(dataclasses.replace(w, layer=f"{evil}{i}") for i, w in enumerate(analysis.weights)),
        model=dataclasses.replace(
            analysis.model,
            source=f"`{evil}`",
            feature_names=tuple(f"{evil}f{i}" for i in range(len(analysis.model.feature_names))),
        ),
        findings=(*analysis.findings, dataclasses.replace(analysis.findings[0], text=f"# {evil}")),
    )
    from inspector.render.markdown import md_code

    md = to_markdown(hostile)
    source = md_code(hostile.model.source)
    assert f"Source: {source};" in md  # a code span shows its text literally, HTML included
    md = md.replace(source, "")
    assert evil not in md and "<img" not in md.replace("\\<img", "")
    table = [line for line in md.splitlines() if line.startswith("| ") and "onerror" in line]
    header = next(line for line in md.splitlines() if line.startswith("| layer | inputs n"))
    cells = lambda line: len(re.split(r"(?<!\\)\|", line))  # noqa: E731
    assert table and all(cells(line) == cells(header) for line in table[: len(layers)])
    assert "\n- \\# " in md and "\n- # " not in md  # the finding opens no heading
    page = to_html(hostile)
    assert _HOSTILE[0] not in page and html_module.escape(_HOSTILE[0]) in page


# --- analyses saved before schema 2; units without a dead mask (issue 9) --------------------------

V1_ANALYSIS = os.path.join(os.path.dirname(__file__), "data", "analysis-v1")  # saved by schema-1 dense-inspector


def test_a_version_1_analysis_folder_still_makes_every_report(tmp_path, capsys):
    import shutil

    from inspector.results import SCHEMA_VERSION

    folder = tmp_path / "v1"
    shutil.copytree(V1_ANALYSIS, folder)
    analysis = Analysis.load(folder)
    md = to_markdown(analysis)
    assert "| fc1 | 6 | 5 | 30 | 5 | 5 × (6 + 1) | 35 |" in md
    assert "| fc1 | relu | module | 5 | 1 |" in md  # the planted dead unit, from the stored census
    assert '<section id="dead">' in to_html(analysis)
    for name in ("r.html", "r.md", "r.json"):
        assert main(["report", str(folder), "--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
    assert "| fc2 | 5 | 4 |" in (tmp_path / "r.md").read_text()
    assert f'{{"schema_version": {SCHEMA_VERSION},' in (tmp_path / "r.json").read_text()[:40]
    assert results_equal(Analysis.load(tmp_path / "r.json"), analysis)


def _smooth_and_unknown(analysis: Analysis) -> Analysis:
    """The v1 analysis with its census replaced by a GELU site (firing and near-zero rates, no dead
    mask) and a site whose activation is unknown (no rates at all)."""
    import dataclasses

    first, second = analysis.activations
    gelu = dataclasses.replace(
        first,
        activation="gelu",
        dead_mask=None,
        nearly_dead_mask=None,
        zero_rate=np.linspace(0.0, 0.8, first.width),
        found_by="module",
    )
    unknown = dataclasses.replace(
        second,
        activation="unknown",
        module=None,
        found_by="not found",
        fire_rate=None,
        dead_mask=None,
        nearly_dead_mask=None,
        saturation_rate=None,
    )
    return dataclasses.replace(analysis, activations=(gelu, unknown))


def test_smooth_and_unknown_units_are_reported_without_a_dead_count():
    from inspector import figures as F
    from inspector.analysis.sections.activations import activation_findings
    from inspector.render.rows import census_rows

    analysis = _smooth_and_unknown(Analysis.load(V1_ANALYSIS))
    gelu, unknown = analysis.activations
    rows = census_rows(analysis)
    assert list(rows[0]) == list(rows[1])  # one set of columns for every kind of unit
    assert rows[0]["dead"] == "-" and "near zero 40.0%" in rows[0]["mean rate"]
    assert (rows[1]["activation"], rows[1]["found by"], rows[1]["dead"], rows[1]["mean rate"]) == (
        "unknown",
        "not found",
        "-",
        "-",
    )
    assert "dead" not in F.neuron_activation_figure(gelu, 0).layout.title.text
    assert F.firing_strip_figure(gelu, 0.01).data[0].marker.color[0] == F.COLORS["alive"]
    assert "no firing or saturation rate" in F.firing_strip_figure(unknown, 0.01).layout.annotations[0].text
    assert "no ReLU-family" in F.dead_summary_figure(analysis.activations, 0.01).layout.annotations[0].text
    texts = [f.text for f in activation_findings(analysis.activations, "test")]
    assert any("near zero on 40.0%" in t for t in texts) and any("unknown" in t for t in texts)
    assert not any("never fire" in t for t in texts)
    assert "gelu" in to_markdown(analysis) and '<section id="dead">' in to_html(analysis)


def test_old_module_names_still_import_the_render_functions():
    import inspector
    import inspector.render.html
    import inspector.render.tables
    import inspector.report
    import inspector.summary

    assert inspector.report.write_report is write_report and inspector.report.to_html is inspector.render.html.to_html
    assert inspector.summary.format_summary is inspector.render.tables.format_summary
    assert inspector.to_html is to_html and inspector.to_markdown is to_markdown

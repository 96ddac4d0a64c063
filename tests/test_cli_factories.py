"""``--model`` / ``--data`` factories on the command line (inspector/factories.py and cli.py).

Every factory is written into ``tmp_path`` (a file module) or into an importable package
put on ``sys.path`` with ``monkeypatch.syspath_prepend``. Numbers are known by construction:
a planted dead neuron (weights 0, bias -10 behind a ReLU), m x (n + 1) parameters, an exact
linear regression (R² = 1), an accuracy recomputed with numpy.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import Analysis
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.factories import (
    is_factory_spec,
    is_own_state_dict,
    load_factory,
    model_from_factory,
    parse_activations,
    save_state_dict,
)

# A classifier 4 -> 5 -> 3 whose hidden neuron 2 is dead (weights 0, bias -10 behind a ReLU),
# and data whose label is how many of the first two inputs are positive.
MODELS = """
import torch
from torch import nn

WIDTH = 5


def mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 3))
    with torch.no_grad():
        model[0].weight[2] = 0.0
        model[0].bias[2] = -10.0
    return model


def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 4, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


class Swish(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(h))


def swish():
    torch.manual_seed(0)
    return Swish()


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        raise RuntimeError("boom in forward")


def broken():
    return Broken()


def raises():
    raise ValueError("bad width\\nsecond line")


def not_a_module():
    return [1, 2, 3]


def generator():
    return (torch.zeros(2, 4) for _ in range(3))


def an_int():
    return 7


def needs_args(width):
    return nn.Linear(width, 2)
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def models(tmp_path) -> Path:
    return write(tmp_path, "mymodels.py", MODELS)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(err: str) -> str:
    """The single ``inspector: error:`` line of a failed command (and nothing else on stderr)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("inspector: error: "), err
    assert "Traceback" not in err
    return lines[0].removeprefix("inspector: error: ")


# --------------------------------------------------------------------------- #
# analyze --model/--data
# --------------------------------------------------------------------------- #


def test_analyze_file_factories_counts_the_planted_dead_neuron(models, tmp_path, capsys):
    out = tmp_path / "out"
    status, printed, _ = run(
        capsys,
        "analyze",
        "--model",
        f"{models}:mlp",
        "--data",
        f"{models}:data",
        "--sections",
        "parameters,activations",
        "--out",
        out,
    )
    assert status == 0
    analysis = Analysis.load(out)
    assert analysis.parameters.total_parameters == 5 * (4 + 1) + 3 * (5 + 1)
    (census,) = [c for c in analysis.activations if c.layer == "0"]
    assert census.activation == "relu"
    assert census.dead_mask is not None
    np.testing.assert_array_equal(np.flatnonzero(census.dead_mask), [2])
    assert analysis.data.n_samples == 120
    assert analysis.model.architecture == "Sequential"
    assert analysis.model.source == f"{models}:mlp"  # where the model came from, in every face
    assert "wrote" in printed
    assert str(models.parent) not in sys.path  # the file's folder was only borrowed


def test_analyze_module_factory_from_an_importable_package(tmp_path, monkeypatch, capsys):
    package = tmp_path / "site" / "userpkg"
    package.mkdir(parents=True)
    write(package, "__init__.py", "")
    write(package, "nets.py", MODELS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    out = tmp_path / "out"
    status, _, _ = run(
        capsys,
        "analyze",
        "--model",
        "userpkg.nets:mlp",
        "--data",
        "userpkg.nets:data",
        "--sections",
        "parameters",
        "--out",
        out,
    )
    assert status == 0
    analysis = Analysis.load(out)
    assert [(r.in_features, r.out_features) for r in analysis.parameters.layers] == [(4, 5), (5, 3)]
    # accuracy recomputed here from the same model and data
    sys.modules.pop("userpkg.nets", None)
    from userpkg.nets import data, mlp

    X, y = data()
    with torch.no_grad():
        expected = int((mlp()(X).argmax(1) == y).sum()) / len(y)
    assert analysis.data.metric == pytest.approx(expected, abs=1e-9)


def test_regression_model_reports_r2_of_one_on_exact_targets(tmp_path, capsys):
    models = write(
        tmp_path,
        "reg.py",
        """
        import torch
        from torch import nn

        def model():
            lin = nn.Linear(3, 1)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor([[1.0, 2.0, -1.0]]))
                lin.bias.fill_(0.5)
            return nn.Sequential(lin)

        def data():
            g = torch.Generator().manual_seed(1)
            X = torch.randn(64, 3, generator=g)
            return X, X @ torch.tensor([1.0, 2.0, -1.0]) + 0.5
        """,
    )
    out = tmp_path / "out"
    status, printed, _ = run(
        capsys,
        "analyze",
        "--model",
        f"{models}:model",
        "--data",
        f"{models}:data",
        "--task",
        "regression",
        "--sections",
        "parameters",
        "--out",
        out,
    )
    assert status == 0
    analysis = Analysis.load(out)
    assert analysis.data.task == "regression"
    assert analysis.data.metric_name == "R²"
    assert analysis.data.metric == pytest.approx(1.0, abs=1e-6)
    assert analysis.data.loss == pytest.approx(0.0, abs=1e-9)  # MSE
    assert "R²" in printed


def test_tiny_cnn_dense_head(tmp_path, capsys):
    models = write(
        tmp_path,
        "cnn.py",
        """
        import torch
        from torch import nn

        def model():
            torch.manual_seed(0)
            return nn.Sequential(
                nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 4), nn.ReLU(), nn.Linear(4, 3)
            )

        def data():
            g = torch.Generator().manual_seed(0)
            return torch.randn(20, 1, 8, 8, generator=g), torch.arange(20) % 3
        """,
    )
    out = tmp_path / "out"
    status, _, _ = run(
        capsys,
        "analyze",
        "--model",
        f"{models}:model",
        "--data",
        f"{models}:data",
        "--sections",
        "parameters,activations",
        "--out",
        out,
    )
    assert status == 0
    analysis = Analysis.load(out)
    assert analysis.parameters.linear_parameters == 4 * (72 + 1) + 3 * (4 + 1)
    assert analysis.parameters.total_parameters == 4 * (72 + 1) + 3 * (4 + 1) + 2 * (9 + 1)
    assert [s.layer for s in analysis.model.sites] == ["3", "5"]
    assert analysis.model.input_shape == (1, 8, 8)
    assert analysis.data.n_samples == 20


def test_tiny_bert_with_a_dict_batch_loader(tmp_path, capsys):
    pytest.importorskip("transformers")
    models = write(
        tmp_path,
        "bert.py",
        """
        import torch
        from transformers import BertConfig, BertForSequenceClassification

        def model():
            torch.manual_seed(0)
            config = BertConfig(
                vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=16, num_labels=2,
            )
            return BertForSequenceClassification(config)

        def loader():
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(1, 40, (12, 6), generator=g)
            mask = torch.ones(12, 6, dtype=torch.long)
            mask[:, 4:] = 0
            rows = [
                {"input_ids": ids[i], "attention_mask": mask[i], "labels": torch.tensor(i % 2)} for i in range(12)
            ]
            return torch.utils.data.DataLoader(rows, batch_size=4)
        """,
    )
    out = tmp_path / "out"
    status, _, err = run(
        capsys,
        "analyze",
        "--model",
        f"{models}:model",
        "--data",
        f"{models}:loader",
        "--sections",
        "parameters,activations",
        "--out",
        out,
    )
    assert status == 0, err
    analysis = Analysis.load(out)
    sites = {s.layer: s for s in analysis.model.sites}
    assert sites["bert.encoder.layer.0.intermediate.dense"].activation == "gelu"
    assert analysis.model.input_kind == "tokens"
    assert analysis.data.n_samples == 12
    census = {c.layer: c for c in analysis.activations}
    # 12 samples x 4 real tokens each: padding is not counted
    assert census["bert.encoder.layer.0.intermediate.dense"].n_positions == 12 * 4


# --------------------------------------------------------------------------- #
# --weights, --activations, --max-samples
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_into_the_factory_model(models, tmp_path, capsys, suffix):
    planted = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        for i, p in enumerate(planted.parameters()):
            p.fill_(0.25 * (i + 1))
    weights = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(planted.state_dict(), weights)
    else:
        from safetensors.torch import save_file

        save_file(planted.state_dict(), str(weights))
    model = model_from_factory(f"{models}:mlp", weights)
    for got, want in zip(model.parameters(), planted.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    out = tmp_path / "out"
    status, _, _ = run(
        capsys, "analyze", "--model", f"{models}:mlp", "--weights", weights, "--sections", "weights", "--out", out
    )
    assert status == 0
    analysis = Analysis.load(out)
    (first, _) = analysis.weights
    np.testing.assert_allclose(first.values, np.full((5, 4), 0.25), rtol=0, atol=0)


def test_weights_with_other_keys_are_one_line(models, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save({"fc1.weight": torch.zeros(5, 4), "0.bias": torch.zeros(5)}, weights)
    out = tmp_path / "out"
    status, _, err = run(capsys, "analyze", "--model", f"{models}:mlp", "--weights", weights, "--out", out)
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"--weights {weights}: its keys do not match --model {models}:mlp")
    assert "missing 0.weight, 2.weight, 2.bias" in line and "unexpected fc1.weight" in line
    assert not out.exists()


def test_activations_declares_what_the_analysis_cannot_find(models, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["analyze", "--model", f"{models}:swish", "--data", f"{models}:data", "--sections", "activations"]
    status, _, _ = run(capsys, *argv, "--activations", "fc1=silu", "--out", out)
    assert status == 0
    sites = {s.layer: s for s in Analysis.load(out).model.sites}
    assert (sites["fc1"].activation, sites["fc1"].found_by) == ("silu", "declared")

    status, _, err = run(capsys, *argv, "--activations", "head=relu", "--out", tmp_path / "other")
    assert status == 1
    line = one_line_error(err)
    assert "'head', which is not an nn.Linear of --model" in line and "fc1, fc2" in line
    assert not (tmp_path / "other").exists()


def test_parse_activations():
    assert parse_activations("fc1=relu, head.fc=gelu") == {"fc1": "relu", "head.fc": "gelu"}
    with pytest.raises(InspectorError, match="unknown activation 'swoosh'"):
        parse_activations("fc1=swoosh")
    with pytest.raises(InspectorError, match="LAYER=ACTIVATION"):
        parse_activations("fc1")


def test_max_samples_limits_the_analysed_samples(models, tmp_path, capsys):
    out = tmp_path / "out"
    status, _, _ = run(
        capsys,
        "analyze",
        "--model",
        f"{models}:mlp",
        "--data",
        f"{models}:data",
        "--max-samples",
        "37",
        "--batch-size",
        "10",
        "--sections",
        "activations",
        "--out",
        out,
    )
    assert status == 0
    analysis = Analysis.load(out)
    assert analysis.data.n_samples == 37
    assert {c.n_samples for c in analysis.activations} == {37}


def test_builtin_data_still_works_with_a_factory_model(tmp_path, capsys):
    models = write(
        tmp_path,
        "digits_net.py",
        "from torch import nn\n\ndef model():\n    return nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))\n",
    )
    out = tmp_path / "out"
    status, _, _ = run(
        capsys, "analyze", "--model", f"{models}:model", "--data", "digits", "--sections", "parameters", "--out", out
    )
    assert status == 0
    analysis = Analysis.load(out)
    from inspector.data import SplitSpec, load_digits, split_dataset

    assert (analysis.data.name, analysis.data.split) == ("digits", "test")
    assert analysis.data.n_samples == len(split_dataset(load_digits(), SplitSpec()).y_test)  # the test split


# --------------------------------------------------------------------------- #
# report and prune
# --------------------------------------------------------------------------- #


def test_report_with_factories(models, tmp_path, capsys):
    out = tmp_path / "r.md"
    status, printed, _ = run(
        capsys, "report", "--model", f"{models}:mlp", "--data", f"{models}:data", "--max-samples", "40", "--out", out
    )
    assert status == 0, printed
    text = out.read_text()
    assert "Sequential" in text and "43" in text  # 5 x (4 + 1) + 3 x (5 + 1) parameters


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_prune_factory_model_writes_its_state_dict(models, tmp_path, capsys, suffix):
    out = tmp_path / f"pruned{suffix}"
    argv = ["prune", "--model", f"{models}:mlp", "--data", f"{models}:data", "--sparsity", "0.5", "--out", out]
    status, printed, _ = run(capsys, *argv)
    assert status == 0
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(out))
    else:
        state = torch.load(out, weights_only=True)["state_dict"]
    sys.path.insert(0, str(models.parent))
    try:
        import mymodels  # the test's own import of the user's file

        model, (X, y) = mymodels.mlp(), mymodels.data()
    finally:
        sys.path.remove(str(models.parent))
        sys.modules.pop("mymodels", None)
    assert sorted(state) == sorted(model.state_dict())
    pruned = mymodels.mlp()
    pruned.load_state_dict(state)
    # global magnitude pruning zeroes the 17 = floor(0.5 x 35) smallest of the 20 + 15 weights (the
    # planted dead row's 4 zeros among them); the 17th smallest |w| is the threshold
    weights = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()]).abs()
    kept = torch.cat([pruned[0].weight.flatten(), pruned[2].weight.flatten()]) != 0
    assert int(kept.sum()) == 35 - 17
    assert bool((weights[kept] >= weights.sort().values[17]).all())
    nonzero = sum(int((p != 0).sum()) for p in pruned.parameters())
    with torch.no_grad():
        before = int((model(X).argmax(1) == y).sum()) / len(y)
        after = int((pruned(X).argmax(1) == y).sum()) / len(y)
    assert f"{nonzero:,} of 43 parameters are nonzero" in printed
    assert f"accuracy {before:.2%} -> {after:.2%}" in printed
    assert is_own_state_dict(out)

    status, _, err = run(capsys, *argv)  # no --force
    assert status == 1 and one_line_error(err) == f"{out} already exists; pass --force to overwrite it"
    assert run(capsys, *argv, "--force")[0] == 0  # ours: replaced


def test_prune_force_never_replaces_a_foreign_file(models, tmp_path, capsys):
    out = tmp_path / "theirs.pt"
    torch.save({"w": torch.ones(2)}, out)
    before = out.read_bytes()
    status, _, err = run(capsys, "prune", "--model", f"{models}:mlp", "--sparsity", "0.5", "--out", out, "--force")
    assert status == 1
    assert "was not written by dense-inspector" in one_line_error(err)
    assert out.read_bytes() == before


def test_save_state_dict_marks_only_its_own_files(tmp_path):
    path = save_state_dict(nn.Linear(2, 3), tmp_path / "s.safetensors")
    assert is_own_state_dict(path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    assert not is_own_state_dict(tmp_path / "foreign.safetensors")


# --------------------------------------------------------------------------- #
# Errors: exit 1, one line naming the factory, nothing written
# --------------------------------------------------------------------------- #

ERRORS = [
    # (model attribute or spec, data attribute or None, the line's start, a fragment)
    ("notaspec", None, "--model notaspec: not a factory", "pkg.module:name or path/to/file.py:name"),
    ("{dir}/missing.py:mlp", None, "--model {dir}/missing.py:mlp: {dir}/missing.py does not exist", ""),
    ("{file}:nothere", None, "--model {file}:nothere: {file} has no attribute 'nothere'", "it defines"),
    ("{file}:WIDTH", None, "--model {file}:WIDTH: WIDTH is a int, not a callable", ""),
    ("{file}:raises", None, "--model {file}:raises: the factory raised ValueError: bad width", ""),
    ("{file}:needs_args", None, "--model {file}:needs_args: the factory raised TypeError:", "width"),
    ("{file}:not_a_module", None, "--model {file}:not_a_module: the factory returned a list, not an nn.Module", ""),
    ("{file}:mlp", "{file}:generator", "--data {file}:generator: the data is a one-shot iterator", ""),
    ("{file}:mlp", "{file}:an_int", "--data {file}:an_int: the factory returned a int", ""),
    ("{file}:broken", "{file}:data", "--model {file}:broken with --data {file}:data:", "RuntimeError: boom in forward"),
    ("nosuchpkg_h1.mod:build", None, "--model nosuchpkg_h1.mod:build: importing nosuchpkg_h1.mod raised", "PYTHONPATH"),
]


@pytest.mark.parametrize(("model", "data", "start", "fragment"), ERRORS)
def test_factory_errors_are_one_line(models, tmp_path, capsys, model, data, start, fragment):
    fill = {"file": models, "dir": tmp_path}
    argv = ["analyze", "--model", model.format(**fill), "--out", tmp_path / "out"]
    if data is not None:
        argv += ["--data", data.format(**fill)]
    status, printed, err = run(capsys, *argv)
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(start.format(**fill)), line
    assert fragment in line
    assert "second line" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("def build(:\n    pass\n", "SyntaxError"),
        (
            "import no_such_module_h1\n\ndef build():\n    pass\n",
            "ModuleNotFoundError: No module named 'no_such_module_h1'",
        ),
    ],
)
def test_a_file_that_fails_to_import_is_one_line(tmp_path, capsys, source, error):
    path = write(tmp_path, "bad.py", source)
    status, _, err = run(capsys, "analyze", "--model", f"{path}:build", "--out", tmp_path / "out")
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"--model {path}:build: importing {path} raised {error}")
    assert not (tmp_path / "out").exists()
    assert str(tmp_path) not in sys.path


def test_checkpoint_and_model_together_are_refused(models, tmp_path, capsys):
    status, _, err = run(capsys, "analyze", tmp_path / "c.pt", "--model", f"{models}:mlp", "--out", tmp_path / "out")
    assert status == 1
    assert one_line_error(err) == f"give a checkpoint or --model {models}:mlp, not both"
    status, _, err = run(capsys, "report", tmp_path / "c.pt", "--model", f"{models}:mlp", "--out", tmp_path / "r.md")
    assert status == 1 and "not both" in one_line_error(err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.md").exists()


def test_tokenizer_without_transformers_says_what_to_do(models, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "tok"
    folder.mkdir()
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now fails
    status, _, err = run(
        capsys, "analyze", "--model", f"{models}:mlp", "--tokenizer", folder, "--out", tmp_path / "out"
    )
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"--tokenizer {folder}: reading a tokenizer needs the transformers package")
    assert "pip install transformers" in line
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_no_tokenizer(models, tmp_path, capsys):
    pytest.importorskip("transformers")
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a tokenizer")
    status, _, err = run(
        capsys, "analyze", "--model", f"{models}:mlp", "--tokenizer", folder, "--out", tmp_path / "out"
    )
    assert status == 1
    line = one_line_error(err)
    assert line.startswith(f"--tokenizer {folder}: not a tokenizer folder")
    assert not (tmp_path / "out").exists()


def test_spec_shapes():
    assert is_factory_spec("pkg.module:build")
    assert is_factory_spec("path/to/my file.py:Models.small")
    assert not is_factory_spec("digits")
    assert not is_factory_spec("data.npz")
    assert not is_factory_spec("pkg.module:")
    assert not is_factory_spec("pkg.module:1x")


def test_a_file_factory_can_import_its_neighbours(tmp_path):
    write(tmp_path, "helpers_h1.py", "WIDTH = 7\n")
    path = write(
        tmp_path,
        "net_h1.py",
        "from torch import nn\nimport helpers_h1\n\ndef build():\n    return nn.Linear(helpers_h1.WIDTH, 2)\n",
    )
    try:
        model = model_from_factory(f"{path}:build")
        assert model.in_features == 7
        assert str(tmp_path) not in sys.path
        assert callable(load_factory(f"{path}:build", "model"))
    finally:
        sys.modules.pop("helpers_h1", None)


# --------------------------------------------------------------------------- #
# Dashboard
# --------------------------------------------------------------------------- #


def test_app_for_factories_keeps_a_probe(models):
    from dashboards.launch import app_for_factories
    from inspector.analysis import AnalysisOptions

    app = app_for_factories(
        f"{models}:mlp", f"{models}:data", options=AnalysisOptions(sections=("parameters", "activations"))
    )
    probe = app.state.probe
    assert probe is not None
    assert probe.n_samples == 120
    assert probe.predict(0).shape == (3,)


def test_a_checkpoint_on_a_data_factory(models, tmp_path, capsys):
    sys.path.insert(0, str(models.parent))
    try:
        import mymodels  # the test's own import of the user's file

        state = mymodels.mlp().state_dict()
    finally:
        sys.path.remove(str(models.parent))
        sys.modules.pop("mymodels", None)
    checkpoint = tmp_path / "foreign.pt"
    torch.save(state, checkpoint)  # a bare state dict: rebuilt as an MLP (relu assumed, with a note)
    out = tmp_path / "out"
    status, _, err = run(
        capsys, "analyze", checkpoint, "--data", f"{models}:data", "--sections", "activations", "--out", out
    )
    assert status == 0
    assert "note: the file stores no activation" in err
    analysis = Analysis.load(out)
    assert analysis.data.n_samples == 120
    assert int(analysis.activations[0].dead_mask.sum()) == 1


def test_a_pickled_module_of_the_factory_files_class_loads_with_trust_pickle(tmp_path):
    source = write(
        tmp_path,
        "picklednet_mod.py",
        """
        import torch
        from torch import nn


        class TinyNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 2)

            def forward(self, x):
                return self.fc(x)


        def build():
            return TinyNet()
        """,
    )
    pickled = tmp_path / "whole.pt"
    script = (
        f"import sys, torch; sys.path.insert(0, {str(tmp_path)!r}); import picklednet_mod as m; "
        f"net = m.build(); torch.nn.init.constant_(net.fc.weight, 0.5); torch.save(net, {str(pickled)!r})"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    path_before = list(sys.path)
    with pytest.raises(InspectorError, match="trust-pickle"):
        model_from_factory(f"{source}:build", pickled)
    model = model_from_factory(f"{source}:build", pickled, trust_pickle=True)  # its class lives beside the factory
    torch.testing.assert_close(model.fc.weight, torch.full((2, 3), 0.5), rtol=0, atol=0)
    assert sys.path == path_before


@pytest.mark.parametrize(
    "option",
    [
        ["--max-samples", "0"],
        ["--batch-size", "0"],
        ["--activations", "fc1=banana"],
        ["--activations", "garbage"],
        ["--task", "banana"],
    ],
)
def test_a_bad_option_value_is_one_usage_line(models, tmp_path, capsys, option):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["analyze", "--model", f"{models}:mlp", "--data", f"{models}:data", *option, "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"argument {option[0]}" in err and err.rstrip().endswith("(see `inspector analyze --help`)")
    assert not out.exists()

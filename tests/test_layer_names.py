"""One name for a layer, the file's, everywhere (issue 20, defect 5).

A foreign state dict's layers keep the names its keys give them: ``info`` (the header), ``analyze``
(the rebuilt module's ``named_modules``), the results JSON, ``prune``'s summary and the checkpoint it
writes. ``torch.save(nn.Sequential(...).state_dict())`` has keys ``0.weight, 2.weight, 4.weight``:
its layers are ``0``, ``2``, ``4``, not ``fc1, fc2, fc3``; a module with named (and nested) children
keeps ``encoder.0``, ``head``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from inspector.checkpoints import load
from inspector.cli import main
from inspector.errors import InspectorError
from inspector.models import MLP, MLPConfig, module_names_fit


class Named(nn.Module):
    """64 -> 16 (batch norm, ReLU) -> 12 (batch norm, ReLU) -> 10, its dense layers in a nested Sequential and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU()
        )
        self.head = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _sequential() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def _named() -> nn.Module:
    torch.manual_seed(0)
    model = Named()
    with torch.no_grad():  # batch-norm statistics that are not the identity, so that a mix-up shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


CASES = {"sequential": (_sequential, ["0", "2", "4"]), "named": (_named, ["encoder.0", "encoder.3", "head"])}


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_rebuilt_module_has_the_files_names_and_computes_the_same(tmp_path, case):
    build, names = CASES[case]
    source = build()
    torch.save(source.state_dict(), tmp_path / "m.pt")
    ckpt = load(tmp_path / "m.pt")
    linear = [name for name, m in ckpt.model.named_modules() if isinstance(m, nn.Linear)]
    assert linear == names == [k[: -len(".weight")] for k, v in source.state_dict().items() if v.dim() == 2]
    assert set(source.state_dict()) == set(ckpt.model.state_dict())  # every key, batch norms included
    x = torch.randn(7, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), source(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_info_analyze_and_prune_name_layers_as_the_file_does(tmp_path, case):
    build, names = CASES[case]
    path = tmp_path / "m.pt"
    torch.save(build().state_dict(), path)

    code, out, err = _cli(["info", "--json", str(path)])
    assert code == 0, err
    assert [layer["layer"] for layer in json.loads(out)["layers"]] == names

    code, out, err = _cli(
        ["analyze", str(path), "--data", "digits", "--out", str(tmp_path / "a"), "--max-samples", "64"]
    )
    assert code == 0, err
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())["result"]
    assert [layer["layer"] for layer in result["parameters"]["layers"]] == names
    for finding in result["findings"]:  # no finding speaks of a layer the file does not have
        assert "fc1" not in json.dumps(finding), finding

    for scope in ("global", "neuron"):  # neuron: the rows of each hidden layer (taken out, where shrinking is)
        written = tmp_path / f"p-{scope}.pt"
        code, out, err = _cli(
            ["prune", str(path), "--data", "digits", "--sparsity", "0.5", "--scope", scope, "--out", str(written)]
        )
        assert code == 0, err
        assert "fc1" not in out + err
        pruned = load(written)
        assert [name for name, m in pruned.model.named_modules() if isinstance(m, nn.Linear)] == names
        code, out, err = _cli(["info", "--json", str(written)])
        assert [layer["layer"] for layer in json.loads(out)["layers"]] == names


def test_own_models_keep_fc_names_and_write_no_names_field():
    config = MLPConfig(4, (3,), 2, batch_norm=True)
    assert [n for n, _ in MLP(config).named_children()] == ["fc1", "bn1", "act1", "fc2"]
    assert "layer_names" not in config.to_dict() and "norm_names" not in config.to_dict()


def test_names_that_cannot_name_modules_fall_back_to_fc_names(tmp_path):
    """A bare ``nn.Linear``'s keys (``weight``, ``bias``) name no module: its layer is ``fc1``."""
    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "bare.pt")
    assert [n for n, m in load(tmp_path / "bare.pt").model.named_modules() if isinstance(m, nn.Linear)] == ["fc1"]


@pytest.mark.parametrize(
    ("names", "fits"),
    [
        (["0", "2", "4"], True),
        (["encoder.0", "encoder.3", "head"], True),
        (["a.0", "b", "a.1"], False),  # a would run both of its layers before b
        (["a", "a.0"], False),  # a layer and a container at once
        (["", "x"], False),
        (["forward", "x"], False),  # an attribute of every module
        (["x", "x"], False),
    ],
)
def test_module_names_fit(names, fits):
    assert module_names_fit(names) is fits


def test_a_config_with_names_that_cannot_fit_is_refused():
    with pytest.raises(InspectorError, match="layer names"):
        MLPConfig(4, (3,), 2, layer_names=("a.0", "a"))
    with pytest.raises(InspectorError, match="must name 2 layers"):
        MLPConfig(4, (3,), 2, layer_names=("a",))


def test_interleaved_names_rebuild_with_fc_names_and_the_same_function(tmp_path: Path):
    """Keys whose layers alternate between two containers can't be one Sequential tree in order."""
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(3, 3)
    c = nn.Linear(3, 2)
    state = {"a.0.weight": a.weight, "a.0.bias": a.bias, "b.weight": b.weight, "b.bias": b.bias}
    state |= {"a.1.weight": c.weight, "a.1.bias": c.bias}
    torch.save({k: v.detach() for k, v in state.items()}, tmp_path / "x.pt")
    ckpt = load(tmp_path / "x.pt")
    assert [n for n, m in ckpt.model.named_modules() if isinstance(m, nn.Linear)] == ["fc1", "fc2", "fc3"]
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), c(torch.relu(b(torch.relu(a(x))))), rtol=0, atol=1e-6)


def test_an_onnx_graph_is_rebuilt_with_the_names_info_gives_its_layers(tmp_path):
    """``torch.onnx`` names the initializers ``encoder.0.weight``: the layer is ``encoder.0`` in the header
    and in the rebuilt module (it was ``encoder_0`` there)."""
    pytest.importorskip("onnx")
    import warnings

    from inspector.inventory import read_inventory

    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh())
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x))

    torch.manual_seed(0)
    source = Nested().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(source, (torch.randn(2, 6),), str(tmp_path / "m.onnx"), dynamo=False)
    names = ["encoder.0", "encoder.2", "head"]
    assert [layer.layer for layer in read_inventory(tmp_path / "m.onnx").linear_layers] == names
    rebuilt = load(tmp_path / "m.onnx").model
    assert [n for n, m in rebuilt.named_modules() if isinstance(m, nn.Linear)] == names
    x = torch.randn(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), source(x), rtol=0, atol=1e-6)

"""ONNX files as the real exporters write them: ``Gemm`` (transB 1 from torch.onnx, transB 0 and
alpha/beta from onnx.helper) and ``MatMul`` + ``Add`` initializers read as dense layers, weights
leaving ``(out, in)``; counts recomputed from the file's own initializers."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from inspector.analysis import analyze_weights_file
from inspector.checkpoints import iter_header_tensors, read_header
from inspector.errors import InspectorError
from inspector.inventory import read_inventory

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _export(model: nn.Module, path, d: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (torch.randn(2, d),), str(path), dynamo=False)


def test_torch_exported_mlp_reads_as_its_linear_layers(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    path = tmp_path / "mlp.onnx"
    _export(net, path, 6)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    gemms = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 3 and all(a.i == 1 for n in gemms for a in n.attribute if a.name == "transB")

    inv = read_inventory(path)
    assert inv.format == "onnx"
    # n inputs, m neurons, m * (n + 1) parameters, from the initializers' own shapes ((out, in) with transB=1)
    expected = [(inits[f"{k}.weight"].shape[1], inits[f"{k}.weight"].shape[0]) for k in ("0", "2", "4")]
    assert [(layer.in_features, layer.out_features) for layer in inv.linear_layers] == expected
    assert [layer.parameters for layer in inv.linear_layers] == [m * (n + 1) for n, m in expected]
    assert (
        inv.totals()["total_parameters"]
        == sum(a.size for a in inits.values())
        == sum(p.numel() for p in net.parameters())
    )
    header = read_header(path)
    for name, tensor in iter_header_tensors(header, [t.name for t in header.tensors]):
        np.testing.assert_array_equal(tensor.numpy(), net.state_dict()[name].numpy())


def _graph_model(nodes, inits, n_in, n_out):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
        [numpy_helper.from_array(a, name) for name, a in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_gemm_without_transb_and_matmul_add_are_transposed_to_out_in(tmp_path):
    rng = np.random.default_rng(0)
    b_in_out = rng.standard_normal((4, 7)).astype(np.float32)  # Gemm B with transB=0: (in, out)
    c = rng.standard_normal(7).astype(np.float32)
    w_in_out = rng.standard_normal((7, 2)).astype(np.float32)  # MatMul W: (in, out)
    bias = rng.standard_normal(2).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "B", "C"], ["h"], name="/enc/Gemm", alpha=2.0, beta=0.5),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W"], ["mm"], name="/head/MatMul"),
        helper.make_node("Add", ["mm", "b"], ["y"]),
    ]
    model = _graph_model(nodes, {"B": b_in_out, "C": c, "W": w_in_out, "b": bias}, 4, 2)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))

    inv = read_inventory(path)
    assert [(layer.layer, layer.in_features, layer.out_features, layer.biases) for layer in inv.linear_layers] == [
        ("enc.Gemm", 4, 7, 7),
        ("head.MatMul", 7, 2, 2),
    ]
    header = read_header(path)
    tensors = dict(iter_header_tensors(header, [t.name for t in header.tensors]))
    np.testing.assert_allclose(tensors["enc.Gemm.weight"].numpy(), 2.0 * b_in_out.T)  # alpha folded in
    np.testing.assert_allclose(tensors["enc.Gemm.bias"].numpy(), 0.5 * c)  # beta folded in
    np.testing.assert_array_equal(tensors["head.MatMul.weight"].numpy(), w_in_out.T)
    np.testing.assert_array_equal(tensors["head.MatMul.bias"].numpy(), bias)
    assert any("alpha 2 and beta 0.5 folded" in n for n in header.notices)
    # the layers compute what the graph computes: y = relu(x B' + C') W + b
    x = rng.standard_normal((5, 4)).astype(np.float32)
    h = np.maximum(x @ tensors["enc.Gemm.weight"].numpy().T + tensors["enc.Gemm.bias"].numpy(), 0)
    want = np.maximum(2.0 * x @ b_in_out + 0.5 * c, 0) @ w_in_out + bias
    np.testing.assert_allclose(h @ tensors["head.MatMul.weight"].numpy().T + bias, want, rtol=1e-5, atol=1e-5)


def test_cli_info_analyze_and_report_on_an_onnx_file(tmp_path):
    torch.manual_seed(0)
    _export(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)), tmp_path / "m.onnx", 10)
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "inspector", *a], capture_output=True, text=True, cwd=tmp_path
    )
    info = run("info", "m.onnx")
    assert info.returncode == 0 and "m.onnx (onnx)" in info.stdout and "16*(10+1) = 176" in info.stdout
    analyzed = run("analyze", "m.onnx", "--out", "D")
    assert analyzed.returncode == 0, analyzed.stderr
    assert (tmp_path / "D" / "analysis.json").is_file()
    report = run("report", "D", "--out", "r.html")
    assert report.returncode == 0, report.stderr
    assert "16*(10+1)" in (tmp_path / "r.html").read_text() or "176" in (tmp_path / "r.html").read_text()
    weights = analyze_weights_file(tmp_path / "m.onnx")
    assert [w.layer for w in weights.weights] == ["0", "2"]


def test_a_damaged_onnx_file_is_one_line(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07\x12\x07pytorch" + b"\xff" * 40)
    with pytest.raises(InspectorError, match="bad.onnx: corrupt ONNX file"):
        read_header(path)


def test_the_dashboard_opens_an_onnx_file(tmp_path):
    from dashboards.launch import app_for_path

    torch.manual_seed(0)
    _export(nn.Sequential(nn.Linear(300, 20), nn.GELU(), nn.Linear(20, 2)), tmp_path / "m.onnx", 300)
    logged: list[str] = []
    app = app_for_path(tmp_path / "m.onnx", log=logged.append)
    assert app.layout is not None and logged


def test_a_folded_matmul_weight_takes_its_layer_name_from_the_bias(tmp_path):
    """torch.onnx's dynamo exporter, on 3-D inputs, writes ``MatMul(x, val_0)`` + ``Add(., fc1.bias)``
    (the transposed weight folded into an anonymous constant): the layer is still ``fc1``."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 8)).astype(np.float32)  # (in, out)
    b = rng.standard_normal(8).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "val_0"], ["mm"], name="node_MatMul_1"),
        helper.make_node("Add", ["mm", "fc1.bias"], ["y"]),
    ]
    onnx.save(_graph_model(nodes, {"val_0": w, "fc1.bias": b}, 6, 8), str(tmp_path / "d.onnx"))
    inv = read_inventory(tmp_path / "d.onnx")
    assert [(layer.layer, layer.in_features, layer.out_features, layer.biases) for layer in inv.linear_layers] == [
        ("fc1", 6, 8, 8)
    ]
    header = read_header(tmp_path / "d.onnx")
    tensors = dict(iter_header_tensors(header, ["fc1.weight", "fc1.bias"]))
    np.testing.assert_array_equal(tensors["fc1.weight"].numpy(), w.T)


def _reference(path, x):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(str(path)).run(None, {"x": x})[0]


def test_a_chain_graph_is_rebuilt_and_computes_what_the_graph_computes(tmp_path):
    """torch.onnx's Gemm/Relu/Tanh/Sigmoid chain, and a hand-built MatMul + Add / Gelu / LeakyRelu chain
    ending in Softmax: the rebuilt module's outputs equal ONNX's own reference evaluator's (softmax of the
    logits where the graph ends in Softmax), so the data sections run on what the file computes."""
    from inspector.checkpoints import load

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 4), nn.Sigmoid())
    _export(net, tmp_path / "t.onnx", 5)
    x = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    inputs = onnx.load(str(tmp_path / "t.onnx")).graph.input[0].name
    from onnx.reference import ReferenceEvaluator

    want = ReferenceEvaluator(str(tmp_path / "t.onnx")).run(None, {inputs: x})[0]
    ckpt = load(tmp_path / "t.onnx")
    with torch.no_grad():
        np.testing.assert_allclose(ckpt.model(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-6)

    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    w2, b2 = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Gelu", ["a1"], ["g"]),
        helper.make_node("LeakyRelu", ["g"], ["l"], alpha=0.2),
        helper.make_node("Gemm", ["l", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(a, n) for n, a in {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(tmp_path / "h.onnx"))
    ckpt = load(tmp_path / "h.onnx")
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.from_numpy(x)), dim=-1).numpy()
    np.testing.assert_allclose(probs, _reference(tmp_path / "h.onnx", x), rtol=1e-5, atol=1e-6)


def test_a_graph_that_is_not_a_chain_gets_the_weight_only_analysis(tmp_path):
    from inspector.checkpoints import load
    from inspector.errors import NotAnMLPError

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    nodes = [  # two dense branches from the input, summed: no chain, and no relu to assume
        helper.make_node("MatMul", ["x", "a"], ["p"]),
        helper.make_node("MatMul", ["x", "b"], ["q"]),
        helper.make_node("Add", ["p", "q"], ["y"]),
    ]
    onnx.save(_graph_model(nodes, {"a": a, "b": b}, 4, 3), str(tmp_path / "branches.onnx"))
    with pytest.raises(NotAnMLPError, match="not a chain of dense layers"):
        load(tmp_path / "branches.onnx")
    assert len(analyze_weights_file(tmp_path / "branches.onnx").weights) == 2

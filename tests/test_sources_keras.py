"""Keras 3 ``.keras`` files written by Keras itself (torch backend, no TensorFlow): Dense kernels
``(in, out)`` leave as ``(out, in)`` with the config's layer names; a Dense chain is rebuilt as a torch
module whose outputs equal ``model.predict``. The reader never imports Keras (checked)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from inspector.analysis import analyze_weights_file
from inspector.checkpoints import iter_header_tensors, load, read_header
from inspector.errors import InspectorError, NotAnMLPError
from inspector.inventory import read_inventory

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("h5py")
keras = pytest.importorskip("keras")


def _dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_sequential_dense_chain_counts_weights_and_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(5, activation="tanh", name="hidden_2"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    path = tmp_path / "m.keras"
    model.save(path)

    inv = read_inventory(path)
    assert inv.format == "keras"
    dense = _dense_layers(model)
    expected = [(d.name, d.kernel.shape[0], d.kernel.shape[1]) for d in dense]
    assert [(layer.layer, layer.in_features, layer.out_features) for layer in inv.linear_layers] == expected
    assert [layer.parameters for layer in inv.linear_layers] == [m * (n + 1) for _, n, m in expected]
    assert inv.totals()["total_parameters"] == model.count_params()

    header = read_header(path)
    tensors = dict(iter_header_tensors(header, [t.name for t in header.tensors]))
    for d in dense:
        np.testing.assert_array_equal(tensors[f"{d.name}.weight"].numpy(), np.asarray(d.kernel.numpy()).T)
        np.testing.assert_array_equal(tensors[f"{d.name}.bias"].numpy(), np.asarray(d.bias.numpy()))

    ckpt = load(path)
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.from_numpy(x)), dim=-1).numpy()
    np.testing.assert_allclose(probs, model.predict(x, verbose=0), atol=1e-6)
    assert ckpt.kind == "keras" and any("rebuilt the keras model" in n for n in ckpt.notices)


def test_functional_model_names_and_a_non_dense_layer(tmp_path):
    keras.utils.set_random_seed(1)
    ids = keras.Input((4,), dtype="int32")
    emb = keras.layers.Embedding(20, 6, name="tok")(ids)
    flat = keras.layers.Flatten()(emb)
    hidden = keras.layers.Dense(7, activation="gelu", name="mlp_up", use_bias=False)(flat)
    out = keras.layers.Dense(2, name="mlp_down")(hidden)
    model = keras.Model(ids, out)
    path = tmp_path / "f.keras"
    model.save(path)

    inv = read_inventory(path)
    assert [(layer.layer, layer.in_features, layer.out_features, layer.biases) for layer in inv.linear_layers] == [
        ("mlp_up", 24, 7, 0),
        ("mlp_down", 7, 2, 2),
    ]
    assert [(e.layer, e.num_embeddings, e.embedding_dim) for e in inv.embeddings] == [("tok.embeddings", 20, 6)]
    assert inv.totals()["total_parameters"] == model.count_params()
    with pytest.raises(NotAnMLPError):  # not a Dense chain: no module rebuilt; the weights are analysed alone
        load(path)
    assert [w.layer for w in analyze_weights_file(path).weights] == ["mlp_up", "mlp_down"]


def test_cli_info_and_analyze_never_import_keras(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(12, activation="relu"), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    probe = (
        "import sys, runpy; sys.argv = ['inspector', 'analyze', 'm.keras', '--out', 'D'];\n"
        "try:\n    runpy.run_module('inspector', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'keras' not in sys.modules, 'the reader imported keras'\nprint('ok')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
    info = subprocess.run(
        [sys.executable, "-m", "inspector", "info", "m.keras"], capture_output=True, text=True, cwd=tmp_path
    )
    assert info.returncode == 0 and "12*(10+1) = 132" in info.stdout


def test_a_keras_zip_without_its_weights_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        archive.writestr("model.weights.h5", b"not hdf5")
    with pytest.raises(InspectorError, match="broken.keras: corrupt Keras weights"):
        read_header(path)


def test_models_inside_models_are_read_layer_by_layer(tmp_path):
    """A Sequential block inside a Functional model, and inside a Sequential: every Dense layer is read
    (named under its block), counts equal count_params; only the all-Sequential chain is rebuilt."""
    keras.utils.set_random_seed(2)

    def block():
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(5, activation="relu", name="in1"),
                keras.layers.Dense(3, name="in2"),
            ],
            name="block",
        )

    x = keras.Input((4,))
    functional = keras.Model(x, keras.layers.Dense(2, name="head")(block()(x)))
    functional.save(tmp_path / "f.keras")
    inv = read_inventory(tmp_path / "f.keras")
    assert [(layer.layer, layer.in_features, layer.out_features) for layer in inv.linear_layers] == [
        ("block.in1", 4, 5),
        ("block.in2", 5, 3),
        ("head", 3, 2),
    ]
    assert inv.totals()["total_parameters"] == functional.count_params()
    with pytest.raises(NotAnMLPError):  # a Functional graph is not rebuilt: weight-only
        load(tmp_path / "f.keras")

    sequential = keras.Sequential(
        [keras.Input((4,)), block(), keras.layers.Dense(2, activation="softmax", name="head")]
    )
    sequential.save(tmp_path / "s.keras")
    ckpt = load(tmp_path / "s.keras")
    assert set(ckpt.model.state_dict()) == {t.name for t in read_header(tmp_path / "s.keras").tensors}  # one name
    xs = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    with torch.no_grad():
        probs = torch.softmax(ckpt.model(torch.from_numpy(xs)), dim=-1).numpy()
    np.testing.assert_allclose(probs, sequential.predict(xs, verbose=0), atol=1e-6)

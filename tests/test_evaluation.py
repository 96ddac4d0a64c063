"""Evaluation data meets a checkpoint by name: labels to outputs, columns to inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.checkpoints import Checkpoint
from inspector.errors import InspectorError
from inspector.evaluation import eval_data_for
from inspector.training import evaluate
from tests.checkpoint_files import argmax_checkpoint

CLASSES = ("cat", "dog", "fish")
FEATURES = ("a", "b", "c")


def _argmax_checkpoint(
    class_names: tuple[str, ...] | None = CLASSES, feature_names: tuple[str, ...] = FEATURES
) -> Checkpoint:
    return argmax_checkpoint(class_names, feature_names)


def _write(tmp_path, text: str):
    path = tmp_path / "eval.csv"
    path.write_text(text)
    return str(path)


def test_labels_map_to_the_model_outputs_by_name_not_by_position(tmp_path):
    # no "dog" row: by position "fish" would become output 1 (dog) and half the answers wrong
    spec = _write(tmp_path, "a,b,c,label\n5,0,0,cat\n0,0,5,fish\n4,1,0,cat\n0,1,3,fish\n")
    data = eval_data_for(_argmax_checkpoint(), spec, label_column="label")
    np.testing.assert_array_equal(data.y, [0, 2, 0, 2])
    assert data.class_names == CLASSES
    accuracy = evaluate(_argmax_checkpoint().model, torch.from_numpy(data.X), torch.from_numpy(data.y))[1]
    assert accuracy == 1.0


def test_numeric_labels_map_by_value(tmp_path):
    ckpt = _argmax_checkpoint(("1000", "2000", "3000"))
    data = eval_data_for(ckpt, _write(tmp_path, "a,b,c,y\n0,0,1,3000.0\n1,0,0,1000\n"), label_column="y")
    np.testing.assert_array_equal(data.y, [2, 0])


def test_labels_the_model_was_not_trained_on_are_named(tmp_path):
    spec = _write(tmp_path, "a,b,c,label\n1,0,0,cat\n0,1,0,bird\n")
    with pytest.raises(
        InspectorError,
        match=r"labels the model was not trained on: 'bird'; "
        r"m.pt knows 'cat', 'dog', 'fish'",
    ):
        eval_data_for(_argmax_checkpoint(), spec, label_column="label")


def test_a_model_without_class_names_has_classes_0_to_n_minus_1(tmp_path):
    ckpt = _argmax_checkpoint(class_names=None)
    data = eval_data_for(ckpt, _write(tmp_path, "a,b,c,label\n0,0,1,2\n1,0,0,0\n"), label_column="label")
    np.testing.assert_array_equal(data.y, [2, 0])
    assert data.class_names == ("0", "1", "2")
    with pytest.raises(InspectorError, match=r"'cat', 'dog'.*stores no class names, so they are 0..n-1"):
        eval_data_for(ckpt, _write(tmp_path, "a,b,c,label\n0,0,1,cat\n1,0,0,dog\n"), label_column="label")


def test_columns_in_another_order_are_put_in_the_model_order(tmp_path):
    spec = _write(tmp_path, "c,label,a,b\n7,fish,1,2\n0,dog,0,9\n")
    data = eval_data_for(_argmax_checkpoint(), spec, label_column="label")
    assert data.feature_names == FEATURES
    np.testing.assert_array_equal(data.X, [[1, 2, 7], [0, 9, 0]])
    assert evaluate(_argmax_checkpoint().model, torch.from_numpy(data.X), torch.from_numpy(data.y))[1] == 1.0


def test_columns_unlike_the_model_are_refused_not_fed_by_position(tmp_path):
    spec = _write(tmp_path, "a,b,z,label\n1,0,0,cat\n0,1,0,dog\n")
    with pytest.raises(InspectorError, match=r"lacks columns the model was trained on: 'c'"):
        eval_data_for(_argmax_checkpoint(), spec, label_column="label")


def test_columns_with_no_name_in_common_are_taken_by_position(tmp_path):
    np.savez(tmp_path / "e.npz", X=np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), y=np.array(["fish", "cat"]))
    data = eval_data_for(_argmax_checkpoint(), str(tmp_path / "e.npz"))
    np.testing.assert_array_equal(data.X, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(data.y, [2, 0])


def test_a_different_feature_count_is_refused(tmp_path):
    spec = _write(tmp_path, "a,b,label\n1,0,cat\n0,1,dog\n")
    with pytest.raises(InspectorError, match="has 2 features but the model expects 3"):
        eval_data_for(_argmax_checkpoint(), spec, label_column="label")


def test_class_names_that_do_not_match_the_outputs_are_refused(tmp_path):
    spec = _write(tmp_path, "a,b,c,label\n1,0,0,cat\n0,1,0,dog\n")
    with pytest.raises(InspectorError, match="stores 2 class names for 3 outputs"):
        eval_data_for(_argmax_checkpoint(("cat", "dog")), spec, label_column="label")


def test_evaluation_rows_of_a_single_class_are_fine(tmp_path):
    data = eval_data_for(
        _argmax_checkpoint(), _write(tmp_path, "a,b,c,label\n0,0,1,fish\n1,0,2,fish\n"), label_column="label"
    )
    np.testing.assert_array_equal(data.y, [2, 2])


# --------------------------------------------------------------------------- the one evaluator


def _linear(weight: list[list[float]], bias: list[float]) -> torch.nn.Linear:
    layer = torch.nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def test_the_one_evaluator_names_its_metric_and_knows_the_closed_form():
    from inspector.analysis.task import task_for_labels
    from inspector.core.evaluator import evaluate_arrays

    X = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # regression: predictions (0, 2, 4, 6) against targets (1, 1, 5, 5): SSE 4, SST about the mean 3 is 16
    model = _linear([[2.0]], [0.0])
    targets = torch.tensor([1.0, 1.0, 5.0, 5.0])
    scores = evaluate_arrays(model, X, targets, task_for_labels(targets), batch_size=3)  # two batches
    assert (scores.metric_name, scores.loss_name, scores.n_samples) == ("R²", "MSE", 4)
    assert scores.loss == pytest.approx(1.0) and scores.metric == pytest.approx(1 - 4 / 16)
    assert evaluate(model, X, targets) == (scores.loss, scores.metric)  # training's evaluate is the same one
    # classification: logits (x, 1.5): class 1 for x < 1.5
    classifier = _linear([[1.0], [0.0]], [0.0, 1.5])
    labels = torch.tensor([1, 1, 1, 0])
    scores = evaluate_arrays(classifier, X, labels, task_for_labels(labels))
    assert (scores.metric_name, scores.metric) == ("accuracy", 0.75)
    assert model.training and classifier.training  # left as they were


def test_scores_merged_from_two_shares_equal_one_pass():
    from inspector.analysis.inputs import Batch
    from inspector.analysis.task import task_for_labels

    g = torch.Generator().manual_seed(0)
    outputs, targets = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g)
    task = task_for_labels(targets)
    whole, first, second = task.scores(), task.scores(), task.scores()
    whole.update(outputs, Batch(outputs, targets))
    first.update(outputs[:4], Batch(outputs[:4], targets[:4]))
    second.update(outputs[4:], Batch(outputs[4:], targets[4:]))
    assert first.merge_from(second).finish() == pytest.approx(whole.finish(), rel=1e-12)
    assert first.n == 10 and first.width == 2


def test_metric_keys_and_formats():
    from inspector.core.evaluator import format_metric, metric_key

    assert metric_key("accuracy") == "test_accuracy" and metric_key("R²") == "test_r2"
    assert metric_key("F1 score (macro)") == "test_f1_score_macro" and metric_key("…") == "test_metric"
    assert format_metric("accuracy", 0.5) == "50.00%" and format_metric("R²", 0.98765) == "0.9877"

"""Regressions from an outside tester: what the model's output means, labels, and one-line errors.

Each user mistake is one :class:`InspectorError` line that says what to do, never a raw
torch or numpy error; each number is checked against one computed here by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import inspector
from inspector.analysis import AnalysisOptions
from inspector.analysis.inputs import Batch
from inspector.analysis.task import make_task, output_tensor
from inspector.errors import InspectorError

ONLY_PARAMETERS = AnalysisOptions(sections=("parameters",))


def _data(n: int = 40, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def _mlp(outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, outputs))


class _DictNoLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(5, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.hidden(x))
        return {"hidden": h, "scores": self.head(h)}


def _one_line(error: pytest.ExceptionInfo[InspectorError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------- 1: the output


def test_output_tensor_refuses_several_tensors_without_logits() -> None:
    out = {"hidden": torch.zeros(2, 8), "scores": torch.zeros(2, 3)}
    with pytest.raises(InspectorError, match=r"several tensors \(hidden, scores\).*target=.*out\['scores'\]"):
        output_tensor(out)
    assert output_tensor({"scores": out["scores"], "note": "x"}) is out["scores"]
    assert output_tensor({**out, "logits": out["scores"]}) is out["scores"]
    assert output_tensor((out["scores"], out["hidden"])) is out["scores"]  # a tuple: its first element


def test_dict_without_logits_is_refused_not_scored_wrongly() -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match="several tensors") as error:
        inspector.analyze(_DictNoLogits(), (x, y), options=ONLY_PARAMETERS)
    _one_line(error)


def test_dict_without_logits_runs_with_target_and_metric() -> None:
    x, y = _data()
    model = _DictNoLogits()
    analysis = inspector.analyze(
        model,
        (x, y),
        target=lambda out, batch: out["scores"].gather(1, batch[1][:, None])[:, 0],
        metric=lambda out, batch: (out["scores"].argmax(1) == batch[1]).float(),
        options=ONLY_PARAMETERS,
    )
    with torch.no_grad():
        expected = (model(x)["scores"].argmax(1) == y).float().mean().item()
    assert analysis.data is not None
    assert analysis.data.metric == pytest.approx(expected)


# ----------------------------------------------------------------------------- 2: raw errors


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ((torch.randn(40, 7), _data()[1]), "RuntimeError"),
        ([{"x": _data()[0][:8], "labels": _data()[1][:8]}], "TypeError"),
    ],
    ids=["wrong feature count", "unknown keyword"],
)
def test_the_first_forward_failing_is_one_line(data: object, kind: str) -> None:
    with pytest.raises(InspectorError, match=rf"could not run on the first batch \({kind}: .*what forward expects"):
        inspector.analyze(_mlp(), data, options=ONLY_PARAMETERS)


def test_a_float64_model_reads_float32_data_cast_to_its_dtype() -> None:
    x, y = _data()
    model = _mlp().double()
    analysis = inspector.analyze(model, DataLoader(TensorDataset(x, y), batch_size=8), options=ONLY_PARAMETERS)
    with torch.no_grad():
        accuracy = float((model(x.double()).argmax(1) == y).double().mean())
    assert analysis.data is not None and analysis.data.metric == pytest.approx(accuracy, abs=1e-12)


def test_the_first_forward_runs_once() -> None:
    x, y = _data()
    calls: list[int] = []
    model = _mlp()
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    seen = len(calls)
    inspector.analyze(model, (x, y), options=ONLY_PARAMETERS)
    # the guarded first forward on a probe of 2 rows, which also finds the sites, then evaluation (one
    # batch of 40): no second class-name forward, no separate forward for the sites
    assert calls[seen:] == [2, 40]


def test_one_hot_integer_labels() -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match=r"shape \(40, 3\).*argmax\(1\)") as error:
        inspector.analyze(_mlp(), (x, nn.functional.one_hot(y, 3)), options=ONLY_PARAMETERS)
    _one_line(error)


def test_text_labels() -> None:
    x, _ = _data()
    with pytest.raises(InspectorError, match="labels are text") as error:
        inspector.analyze(_mlp(), (x.numpy(), np.array(["a", "b"] * 20)), options=ONLY_PARAMETERS)
    _one_line(error)


@pytest.mark.parametrize("value", ["x", None, torch.zeros(2, 2)], ids=["str", "None", "wrong shape"])
def test_metric_returning_a_non_number(value: object) -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match="metric= returned"):
        inspector.analyze(_mlp(), (x, y), metric=lambda out, batch: value, options=ONLY_PARAMETERS)


def test_metric_may_return_a_batch_mean_or_an_array() -> None:
    x, y = _data()
    model = _mlp()
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).double()
    mean = inspector.analyze(
        model, (x, y), metric=lambda out, b: float((out.argmax(1) == b[1]).float().mean()), options=ONLY_PARAMETERS
    )
    array = inspector.analyze(
        model, (x, y), metric=lambda out, b: (out.argmax(1) == b[1]).numpy(), options=ONLY_PARAMETERS
    )
    assert mean.data is not None and array.data is not None
    assert mean.data.metric == pytest.approx(correct.mean().item())
    assert array.data.metric == pytest.approx(correct.mean().item())


# ----------------------------------------------------------------------------- 3: messages


def test_whole_float_labels_taken_as_regression_say_task_classification() -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match="taken as regression targets.*task='classification'") as error:
        inspector.analyze(_mlp(), (x, y.float()), options=ONLY_PARAMETERS)
    assert "target=" not in _one_line(error)
    analysis = inspector.analyze(_mlp(), (x, y.float()), task="classification", options=ONLY_PARAMETERS)
    assert analysis.model.task == "classification"


def test_make_task_without_output_still_infers() -> None:
    x, y = _data()
    assert make_task(None, Batch(x, y.float())).kind == "regression"


def test_single_logit_with_class_labels_says_regression_or_target() -> None:
    x, y = _data(classes=2)
    with pytest.raises(InspectorError, match="one output.*task='regression'.*out\\[:, 0\\]") as error:
        inspector.analyze(_mlp(1), (x, y), options=ONLY_PARAMETERS)
    _one_line(error)


def test_regression_with_target_uses_the_target_as_prediction() -> None:
    x, _ = _data()
    y = torch.randn(40, generator=torch.Generator().manual_seed(1))
    model = _mlp(2)
    analysis = inspector.analyze(
        model, (x, y), task="regression", target=lambda out, batch: out[:, 1], options=ONLY_PARAMETERS
    )
    with torch.no_grad():
        pred = model(x)[:, 1].double()
    mse = ((pred - y.double()) ** 2).mean().item()
    r2 = 1 - ((pred - y.double()) ** 2).sum().item() / ((y.double() - y.double().mean()) ** 2).sum().item()
    assert analysis.data is not None
    assert analysis.model.task == "regression"
    assert analysis.data.loss == pytest.approx(mse)
    assert analysis.data.metric == pytest.approx(r2)


def test_ignore_index_labels_are_left_out_of_loss_and_accuracy() -> None:
    x, y = _data()
    labels = torch.where(y == 0, torch.tensor(-100), y)
    model = _mlp()
    analysis = inspector.analyze(model, (x, labels), options=ONLY_PARAMETERS)
    kept = labels != -100
    with torch.no_grad():
        logits = model(x)
    assert analysis.data is not None
    assert analysis.data.n_samples == 40
    assert analysis.data.metric == pytest.approx((logits.argmax(1) == labels)[kept].float().mean().item())
    assert analysis.data.loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    explained = make_task(None, Batch(x, labels)).target(logits, Batch(x, labels))
    assert torch.equal(explained[kept], logits[kept].gather(1, labels[kept][:, None])[:, 0])
    assert torch.equal(explained[~kept], logits[~kept].max(1).values)  # ignored: the predicted class's logit


def test_labels_outside_the_outputs_are_still_refused() -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match=r"outside the model's 3 outputs \(labels -1\.\.1\)"):
        inspector.analyze(_mlp(), (x, y - 1), options=ONLY_PARAMETERS)


# ----------------------------------------------------------------------------- 4: token text on floats


@pytest.mark.parametrize("given", [{"vocabulary": ["a"]}, {"tokenizer": object()}], ids=["vocabulary", "tokenizer"])
def test_token_text_with_float_inputs_is_refused(given: dict[str, object]) -> None:
    x, y = _data()
    with pytest.raises(InspectorError, match="only to integer token-id inputs") as error:
        inspector.analyze(_mlp(), (x, y), options=ONLY_PARAMETERS, **given)  # type: ignore[arg-type]
    _one_line(error)

"""scikit-learn ``MLPClassifier`` / ``MLPRegressor``: from a ``skops`` file (secure: only the MLP's own
types are trusted), or from a plain pickle only with ``trust_pickle`` (unpickling runs code).

``coefs_[k]`` is ``(in, out)``: it leaves as ``fc{k+1}.weight`` ``(out, in)``, ``intercepts_[k]`` as
``fc{k+1}.bias``, in the estimator's own dtype (float64 unless it was fitted on float32). The model
is rebuilt as a torch ``nn.Sequential`` with the estimator's activation, so the data sections run:
a classifier returns logits (``softmax(logits)`` equals ``predict_proba``; a binary classifier's
single logistic unit ``z`` returns the logits ``(0, z)``, whose softmax is ``(1 - p, p)``), a regressor
returns what ``predict`` returns.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.errors import InspectorError
from inspector.formats import pickle_magic, zip_magic, zip_read_error
from inspector.sources.base import Contents, TensorSource, first_line, linear_from, zip_names

# the types a fitted MLP holds that skops does not trust by default: its optimizers' state
_MLP_TYPES = frozenset(
    {
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    }
)
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "identity": nn.Identity,
}


class BinaryLogits(nn.Module):
    """``z (n, 1) -> (0, z) (n, 2)``: a logistic unit as two-class logits (``softmax = (1 - sigmoid(z), sigmoid(z))``)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(z), z], dim=-1)


class _Estimator(TensorSource):
    """The shared part: an estimator in hand, tensors and a module from it."""

    def __init__(self, path: Path, *, trust_pickle: bool = False) -> None:
        super().__init__(path, trust_pickle=trust_pickle)
        self._fitted: Any = None

    def _load(self) -> Any:
        raise NotImplementedError

    def estimator(self) -> Any:
        """The fitted ``MLPClassifier`` / ``MLPRegressor`` the file holds."""
        if self._fitted is None:
            est = self._load()
            kind = type(est).__name__
            if kind not in ("MLPClassifier", "MLPRegressor"):
                raise InspectorError(
                    f"{self.path}: holds a scikit-learn {kind}, not an MLPClassifier or MLPRegressor; "
                    "only multilayer perceptrons have dense layers to analyse"
                )
            if not isinstance(getattr(est, "coefs_", None), list) or not est.coefs_:
                raise InspectorError(f"{self.path}: the {kind} is not fitted (no coefs_); fit it before saving")
            if getattr(est, "activation", None) not in _ACTIVATIONS:
                raise InspectorError(f"{self.path}: unknown {kind} activation {est.activation!r}")
            self._fitted = est
        return self._fitted

    def _tensors(self) -> dict[str, torch.Tensor]:
        est = self.estimator()
        out: dict[str, torch.Tensor] = {}
        for k, (coef, intercept) in enumerate(zip(est.coefs_, est.intercepts_), start=1):
            out[f"fc{k}.weight"] = torch.from_numpy(np.ascontiguousarray(np.asarray(coef).T))
            out[f"fc{k}.bias"] = torch.from_numpy(np.ascontiguousarray(np.asarray(intercept)))
        return out

    def header(self) -> Contents:
        est = self.estimator()
        meta = {k: torch.empty(t.shape, dtype=t.dtype, device="meta") for k, t in self._tensors().items()}
        shown: dict[str, Any] = {
            "estimator": type(est).__name__,
            "activation": est.activation,
            "out_activation": getattr(est, "out_activation_", None),
        }
        if hasattr(est, "classes_"):
            shown["classes"] = [str(c) for c in np.asarray(est.classes_).tolist()]
        return Contents(meta, metadata=shown)

    def read(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        tensors = self._tensors()
        for name in names:
            yield name, tensors[name]

    def model(self, activation: str | None) -> nn.Module:
        est = self.estimator()
        tensors = self._tensors()
        n = len(est.coefs_)
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        for k in range(1, n + 1):
            modules[f"fc{k}"] = linear_from(tensors[f"fc{k}.weight"], tensors[f"fc{k}.bias"])
            if k < n:
                modules[f"act{k}"] = _ACTIVATIONS[est.activation]()
        if getattr(est, "out_activation_", None) == "logistic" and tensors[f"fc{n}.weight"].shape[0] == 1:
            modules["logits"] = BinaryLogits()
        return nn.Sequential(modules).eval()


class SkopsSource(_Estimator):
    """A ``skops.io.dump`` file (a zip with ``schema.json``): loaded by skops, trusting only the MLP's types."""

    format = "skops"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return zip_magic(head) and "schema.json" in zip_names(path)

    def _load(self) -> Any:
        try:
            import skops.io as sio
        except ImportError:
            raise InspectorError(
                f"{self.path}: a skops file; reading it needs skops: pip install 'dense-inspector[sklearn]'"
            ) from None
        try:
            untrusted = sio.get_untrusted_types(file=self.path)
        except Exception as exc:  # a damaged zip or schema: skops raises many types
            corrupt = zip_read_error(self.path, exc)  # skops reads each member to its end: zipfile checks its CRC
            raise corrupt or InspectorError(f"{self.path}: corrupt skops file ({first_line(exc)})") from None
        unknown = sorted(set(untrusted) - _MLP_TYPES)
        if unknown:
            raise InspectorError(
                f"{self.path}: the skops file holds types that are not part of a scikit-learn MLP "
                f"({', '.join(unknown[:3])}); only MLPClassifier / MLPRegressor files are read"
            )
        try:
            return sio.load(self.path, trusted=list(untrusted))
        except Exception as exc:
            corrupt = zip_read_error(self.path, exc)
            raise corrupt or InspectorError(f"{self.path}: corrupt skops file ({first_line(exc)})") from None


class SklearnPickleSource(_Estimator):
    """A plain pickle of a scikit-learn estimator: read only with ``trust_pickle`` (unpickling runs code)."""

    format = "sklearn-pickle"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return pickle_magic(head) and b"sklearn." in head[:256]

    def _load(self) -> Any:
        if not self.trust_pickle:
            raise InspectorError(
                f"{self.path}: a pickled scikit-learn model, not a PyTorch checkpoint; loading a pickle runs "
                "code from the file: save it with skops (skops.io.dump), or pass --trust-pickle "
                "(trust_pickle=True) only if you trust where the file came from"
            )
        try:
            with self.path.open("rb") as fh:
                return pickle.load(fh)  # noqa: S301 - the user asked for it (trust_pickle)
        except Exception as exc:
            raise InspectorError(f"{self.path}: could not unpickle the file ({first_line(exc)})") from None

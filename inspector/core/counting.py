"""How the activation census and the live Monitor count a dense site's rows: the rule per kind of
unit (:func:`activation_group`), the saturation test of squashing units (:func:`saturated`), and the
per-neuron sums kept on the device (:class:`Sums`). See :mod:`inspector.analysis.activations` for
what each rule means and the papers behind it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from inspector.core import kernels

# Units whose output is exactly zero for every non-positive input: a neuron that never
# receives a positive input is dead (Lu et al. 2019).
RECTIFIERS = ("relu", "relu6")
# Leaky units pass a scaled negative part; "dead" means the input is never positive (as for ReLU).
LEAKY = ("leaky_relu", "prelu")
# Smooth units: never exactly zero, so they report the fraction of (nearly) zero outputs instead.
SMOOTH = ("gelu", "silu", "mish", "softplus", "elu", "selu", "celu", "hardswish")
# Squashing units: the fraction of samples in a flat tail (Glorot & Bengio 2010).
SQUASHERS = ("sigmoid", "tanh", "hardtanh", "hardsigmoid")
KINDS = RECTIFIERS + LEAKY + SMOOTH + SQUASHERS

SATURATION = 0.99

FLUSH_ROWS = 2**23  # float32 counts are exact below 2**24; flush to float64 well before


def activation_group(kind: str) -> str:
    """Which rule a kind of unit is counted by: rectifier, leaky, smooth, squasher or unknown."""
    for name, kinds in (("rectifier", RECTIFIERS), ("leaky", LEAKY), ("smooth", SMOOTH), ("squasher", SQUASHERS)):
        if kind in kinds:
            return name
    return "unknown"


def fire_rule(kind: str) -> tuple[int, float]:
    """The census's first count of a unit of ``kind`` as a rule of :mod:`inspector.core.kernels` and its
    threshold: every unit ``v > 0`` but squashers, which count their flat tail: ``|v| > SATURATION``
    (tanh, hardtanh: range (-1, 1)) or ``|v - 0.5| > SATURATION - 0.5`` (sigmoid, hardsigmoid: range (0, 1)).
    The one place that says which tail a squasher has: :func:`saturated` and :func:`indicator_writer` ask it."""
    if activation_group(kind) != "squasher":
        return kernels.POSITIVE, 0.0
    if kind in ("tanh", "hardtanh"):
        return kernels.BEYOND, SATURATION
    return kernels.OFF_HALF, SATURATION - 0.5


def saturated(kind: str, out: torch.Tensor, indicator: torch.Tensor) -> None:
    """``indicator`` := 1 where the squashing unit ``kind`` sits in a flat tail (:func:`fire_rule`)."""
    rule, limit = fire_rule(kind)
    torch.gt((out if rule == kernels.BEYOND else out - 0.5).abs(), limit, out=indicator)


def count_rule(kind: str, near_zero: float = 0.01) -> tuple[int, float]:
    """The live Monitor's one count of a unit of ``kind`` as a rule of :mod:`inspector.core.kernels` and its
    threshold, by its :func:`activation_group`: rectifiers, leaky and unknown units ``v > 0`` (their output,
    or their pre-activation), smooth units ``|v| < near_zero``, squashers their flat tail (:func:`fire_rule`)."""
    group = activation_group(kind)
    if group in ("rectifier", "leaky", "unknown"):
        return kernels.POSITIVE, 0.0
    if group == "smooth":
        return kernels.NEAR_ZERO, near_zero
    return fire_rule(kind)


def indicator_writer(
    kind: str, device: torch.device, near_zero: float = 0.01
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """``write(values, indicator)``: ``indicator`` (float32, the shape of ``values``) := 1 where the one count
    of a unit of ``kind`` holds (:func:`count_rule`), else 0: the count by operations, where
    :func:`inspector.core.kernels.row_counter` cannot (another device or dtype, numba switched off).

    The same numbers as :func:`saturated` and the comparisons written with Python numbers (those compare
    in float32, as the 0-d float32 tensors here do), in fewer, cheaper calls: the thresholds are tensors
    made once on ``device`` (a Python number is wrapped into a tensor on every call, about 3 us on a CPU),
    and every step writes into ``indicator``. ``values`` that need autograd are only read."""
    rule, limit = count_rule(kind, near_zero)
    threshold = torch.tensor(limit, dtype=torch.float32, device=device)
    if rule == kernels.POSITIVE:

        def write(values: torch.Tensor, indicator: torch.Tensor) -> None:
            torch.gt(values, threshold, out=indicator)  # a comparison writes into out= even when values need autograd

    elif rule == kernels.NEAR_ZERO:

        def write(values: torch.Tensor, indicator: torch.Tensor) -> None:
            torch.abs(values.detach(), out=indicator)
            torch.lt(indicator, threshold, out=indicator)

    elif rule == kernels.BEYOND:  # squashers: their tail (tanh, hardtanh)

        def write(values: torch.Tensor, indicator: torch.Tensor) -> None:
            torch.abs(values.detach(), out=indicator)
            torch.gt(indicator, threshold, out=indicator)

    else:  # sigmoid, hardsigmoid: about 0.5
        half = torch.tensor(0.5, dtype=torch.float32, device=device)

        def write(values: torch.Tensor, indicator: torch.Tensor) -> None:
            torch.sub(values.detach(), half, out=indicator)
            indicator.abs_()
            torch.gt(indicator, threshold, out=indicator)

    return write


class Sums:
    """Per-neuron sums on the device: float64 ``totals`` ``(k, m)`` and the float32 ``partial`` sums
    ``(k, 1, m)`` added since the last flush (``rows``: their ``k`` views), plus one reused indicator
    buffer. The census keeps k = 3 (fired, zero, total); the live Monitor k = 2 (fired, other).
    Its float64 ``totals`` are what a :class:`~inspector.core.statistic.Statistic` declares as a "sum" state.

    Each batch adds into the float32 rows with one GEMM against a row of ones (the cheapest column sum
    on CPU and GPU alike); before they would pass ``FLUSH_ROWS`` rows they are folded into float64,
    so counts stay exact for any number of rows.
    """

    def __init__(self, width: int, device: torch.device, k: int = 3) -> None:
        self.width = width
        self.totals = torch.zeros(k, width, dtype=torch.float64, device=device)
        self.partial = torch.zeros(k, 1, width, device=device)
        self.rows = self.partial.unbind(0)  # the k row views: unpacked once, not on every call
        self.pending_rows = 0
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def add_rows(self, rows: int) -> None:
        """Make room for ``rows`` more rows in the float32 sums (folding them into float64 first if needed)."""
        if self.pending_rows + rows > FLUSH_ROWS:
            self.flush()
        self.pending_rows += rows

    def scratch(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indicator (rows, m), ones (1, rows))`` on the sums' device, reused while the row count stays
        the same (only the latest shape is kept: variable-length batches must not grow a cache)."""
        if self._buffers is None or self._buffers[1].shape[1] != rows:
            device = self.totals.device
            self._buffers = (torch.empty(rows, self.width, device=device), torch.ones(1, rows, device=device))
        return self._buffers

    def flush(self) -> None:
        if self.pending_rows:
            self.totals += self.partial[:, 0]
            self.partial.zero_()
            self.pending_rows = 0

    def current(self) -> torch.Tensor:
        """``(k, m)`` float64 on the host: the totals plus the partial sums not folded in yet, added there:
        what :meth:`flush` would leave in ``totals`` (exact for whole-number counts), leaving both as they are,
        in one host copy of each (a flush is three device calls)."""
        return self.totals.cpu() + self.partial[:, 0].cpu()

    def zero_(self) -> None:
        """The totals and the partial sums back to zero, in place (views of them stay valid)."""
        self.totals.zero_()
        self.partial.zero_()
        self.pending_rows = 0

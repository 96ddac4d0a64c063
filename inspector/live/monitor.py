"""The Monitor: the dense layers' statistics while a model trains, into a run directory.

::

    monitor = inspector.Monitor(model, "runs/exp1", every=50, optimizer=optimizer)
    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor.step(loss)          # after optimizer.step(): once per optimizer step
    monitor.close()

What is measured, and when:

- Every forward in training mode (``model.training``; evaluation passes inside the loop are not
  counted) adds, per dense site and on the device (no host synchronisation), one count per neuron
  by the census's rules (:mod:`inspector.analysis.activations`): the rows on which it fired for
  rectifiers (output > 0) and leaky or unknown units (pre-activation > 0); the rows in a flat tail
  for squashers (sigmoid, tanh); the near-zero rows for smooth units (GELU, SiLU). One count, not
  two: each pass over a batch's values is most of the Monitor's cost. Padded positions (a batch's
  ``attention_mask``) are left out. On the CPU one compiled call per site reads the values once
  (:func:`inspector.core.kernels.row_counter`; numba, as the census's loops); elsewhere, or with
  ``DENSE_INSPECTOR_KERNELS=torch``, a comparison into a reused buffer and a one-row GEMM: the same counts.
- Every ``every`` steps a record: per layer ``dead`` (rectifiers and leaky units: neurons that
  never fired since the last record), ``nearly_dead`` (fired on fewer than the threshold's share of
  rows), ``dead_fraction``, ``saturation`` (squashers) or ``zero_rate`` (smooth units), the same
  per neuron (vectors ``fire_rate``, ``saturation`` or ``zero_rate``), ``rows``; then the counts start again. The gradient of each dense weight
  at that step (``grad_norm``, taken by a post-accumulate-grad hook because the user zeroes the
  gradients before :meth:`Monitor.step` runs), the weight after the step (``weight_norm``) and
  ``update_ratio`` = ||w after - w before|| / ||w before||; the ``loss`` and ``lr``. A value that
  does not apply (no gradient at that step, a ReLU's saturation) is NaN.
- Warnings (deaths, a non-finite loss or gradient, a vanishing gradient, saturation) go into the
  run's events and to the ``inspector.live`` logger, once when a condition starts.

Sites are found by :func:`inspector.analysis.sites.discover_sites` on the first training batch
(its first two rows, in eval mode, under ``no_grad``), or on ``example=`` when given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.analysis.guard import _Guard
from inspector.analysis.inputs import LABEL_KEYS, MASK_KEY, Batch, to_batch
from inspector.analysis.sites import TRANSPARENT, Site, SiteObserver, discover_sites, near_zero
from inspector.core import counting, kernels
from inspector.core.counting import Sums, activation_group, count_rule, indicator_writer
from inspector.core.dense import dense_layers, is_dense, weight_parameter
from inspector.core.statistic import Statistic
from inspector.errors import InspectorError
from inspector.live.store import RunHistory, RunWriter, read_run

log = logging.getLogger("inspector.live")

CHANCE = 1e-6  # the largest chance probability of a reported die-off (tested at every record)
DEATH_JUMP = 0.10  # this share of a layer's neurons dying between two records (beyond chance) is a warning
VANISHING = 1e-4  # a layer's grad norm below this share of the largest layer's is a warning
SATURATED = 0.5  # a squashing layer with more than half its values in the tails is a warning


class Scratch:
    """The float32 indicator buffers and rows of ones the sites count with, shared by the sites of one
    width (a forward counts its sites one after another): fewer buffers for the caches to hold. Only the
    latest shape per width is kept, so variable-length batches do not grow it."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def get(self, shape: torch.Size, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(indicator shape, its (rows, m) view, ones (1, rows))`` on ``device``."""
        key = (int(shape[-1]), device)
        buffers = self._buffers.get(key)
        if buffers is None or buffers[0].shape != shape:
            indicator = torch.empty(shape, device=device)
            flat = indicator.view(-1, key[0])
            buffers = self._buffers[key] = (indicator, flat, torch.ones(1, flat.shape[0], device=device))
        return buffers


class SiteCounts(Statistic):
    """One site's counts since the last record, as a :class:`~inspector.core.statistic.Statistic`.

    States ("sum"): ``totals`` ``(2, m)``, the :class:`~inspector.core.counting.Sums` (k = 2) on the
    device: ``fired`` (rows where the neuron fired) and ``other`` (saturated rows for squashers,
    near-zero rows for smooth units) per neuron; ``rows`` (a Python int, or a 0-d tensor once a masked call
    was counted by operations); ``samples``, the calls' first dimension (sequences, not their positions).
    """

    totals: torch.Tensor | np.ndarray | float
    rows: torch.Tensor | int
    samples: int

    def __init__(self, site: Site, scratch: Scratch | None = None) -> None:
        super().__init__()
        self.site = site
        self.group = activation_group(site.activation)
        self.near_zero = near_zero(site.activation)  # smooth units: the |output| counted as zero
        # one count per unit, the one its statistics need (each pass over the batch's values is most of
        # the Monitor's cost): ReLU its positive outputs, leaky and unknown units their positive inputs
        # (the fired row), squashers their saturated values, smooth units their near-zero ones (the other)
        self.on_pre = self.group in ("leaky", "unknown")
        self.counted_row = 0 if self.group in ("rectifier", "leaky", "unknown") else 1
        self.scratch = scratch if scratch is not None else Scratch()
        self.sums: Sums | None = None
        self._write: Any = None  # the unit's indicator rule, made on the sums' device at the first call
        self._compiled: Any = None  # kernels.row_counter into the counted row: CPU sums, numba there
        self._key: tuple[Any, ...] | None = None  # (shape, dtype, device) that _count was made for
        self._count: Callable[[torch.Tensor], None] | None = None
        self.add_state("totals", 0.0, "sum")  # becomes the Sums' float64 totals on the first call
        self.add_state("rows", 0, "sum")
        self.add_state("samples", 0, "sum")

    def update(self, pre: torch.Tensor, out: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Count one call of the site: ``pre`` its pre-activation, ``out`` its output, ``mask`` the
        batch's ``attention_mask`` ``(batch, positions)`` (its zeros are not counted) or ``None``."""
        # called for every site on every training forward: after the first call of a shape, one check
        # and the closure made for it (two or three tensor calls), nothing else
        values = pre if self.on_pre else out
        if mask is None and (values.shape, values.dtype, values.device) == self._key:
            self._count(values)  # type: ignore[misc]
        else:
            self._update(values, mask)

    def _update(self, values: torch.Tensor, mask: torch.Tensor | None) -> None:
        shape = values.shape
        width = int(shape[-1])
        if mask is not None and (len(shape) != 3 or tuple(shape[:2]) != tuple(mask.shape)):
            mask = None  # not a per-position tensor of this batch: every row counts
            if (shape, values.dtype, values.device) == self._key:
                self._count(values)  # type: ignore[misc]
                return
        sums = self.sums
        if sums is None:
            sums = self.sums = Sums(width, values.device, k=2)
            self.totals = sums.totals  # the same tensor: each flush adds into it in place
            self._write = indicator_writer(self.site.activation, values.device, self.near_zero)
            rule = count_rule(self.site.activation, self.near_zero)
            self._compiled = kernels.row_counter(sums.rows[self.counted_row].view(-1), *rule)
        elif sums.width != width:
            raise InspectorError(
                f"layer {self.site.layer}: its activation saw {width} features on one call and "
                f"{sums.width} on another; declare its activation with activations="
            )
        rows = values.numel() // width if width else 0
        if mask is None:
            self._key = (shape, values.dtype, values.device)
            self._count = self._counter(sums, values, rows)
            self._count(values)
            return
        sums.add_rows(rows)
        self.samples += int(shape[0]) if len(shape) > 1 else 1
        compiled = self._compiled_for(values)
        if compiled is not None and mask.is_cpu:
            self.rows = self.rows + compiled(values.detach().float(), mask.reshape(-1).to(torch.bool))
            return
        # a weighted column sum by one GEMM: the weights are the row mask (padding 0), so nothing is
        # indexed by a mask (which would wait for the device). The indicator is written by the
        # comparison itself into the reused float buffer: a bool tensor converted to float costs five
        # times as much on the CPU
        indicator, flat, _ = self.scratch.get(shape, sums.totals.device)
        weights = mask.reshape(1, -1).to(device=flat.device, dtype=torch.float32)
        self._write(values if values.dtype == torch.float32 else values.detach().float(), indicator)
        sums.rows[self.counted_row].addmm_(weights, flat)
        self.rows = self.rows + weights.sum()

    def _compiled_for(self, values: torch.Tensor) -> Any:
        """The compiled count when it takes ``values`` (floating point on the CPU, converted to float32 before
        it), else ``None``: the operations count."""
        return self._compiled if values.is_cpu and values.is_floating_point() else None

    def _counter(self, sums: Sums, values: torch.Tensor, rows: int) -> Callable[[torch.Tensor], None]:
        """The count of one unmasked call with the shape, dtype and device of ``values``: on the CPU one
        compiled call that reads the values once and adds to the float32 sums (no indicator written);
        elsewhere (or with numba switched off) the comparison written into a reused float buffer and a
        one-row GEMM."""
        compiled = self._compiled_for(values)
        if compiled is None:
            indicator, flat, ones = self.scratch.get(values.shape, sums.totals.device)
        write, row = self._write, sums.rows[self.counted_row]
        shape = values.shape
        samples = int(shape[0]) if len(shape) > 1 else 1
        convert = values.dtype != torch.float32

        def count(values: torch.Tensor) -> None:
            pending = sums.pending_rows + rows  # Sums.add_rows, inline: room in the float32 sums
            if pending > counting.FLUSH_ROWS:
                sums.flush()
                pending = rows
            sums.pending_rows = pending
            if convert:
                values = values.detach().float()
            if compiled is not None:
                compiled(values)
            else:
                write(values, indicator)
                row.addmm_(ones, flat)
            self.rows += rows
            self.samples += samples

        return count

    def finish(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(fired (m,), other (m,))`` float64 since the last reset (zeros when nothing was counted since), or
        ``None`` before the first call."""
        sums = self.sums
        if sums is not None and self.totals is sums.totals:
            # the exact counts a flush would give, read without one (the record resets both right after)
            totals = sums.current().numpy()
            return totals[0], totals[1]
        if sums is not None:
            sums.flush()
        if not np.ndim(self.totals):
            return None
        totals = torch.as_tensor(self.totals).cpu().numpy().copy()  # the totals are zeroed in place at reset
        return totals[0], totals[1]

    def reset(self) -> None:
        super().reset()
        sums = self.sums
        if sums is not None:  # zeroed in place: the count made for the current shape goes on with them
            sums.zero_()
            self.totals = sums.totals


def _call_batch(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Batch | None:
    """The forward call ``model(*args, **kwargs)`` as a :class:`Batch` that repeats it exactly (every
    keyword, ``labels`` included: a model may require them), or ``None`` when it is not one (several
    positional arguments, no tensor)."""
    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        mask = kwargs.get(MASK_KEY)
        return Batch(
            args[0],
            extra=dict(kwargs),
            mask=mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None,
        )
    if not args and kwargs:
        try:
            batch = to_batch(dict(kwargs))
        except InspectorError:
            return None
        labels = {k: v for k, v in kwargs.items() if k in LABEL_KEYS}
        return dataclasses.replace(batch, extra={**batch.extra, **labels})
    return None


def _copied(batch: Batch) -> Batch:
    def copy(value: Any) -> Any:
        return value.detach().clone() if isinstance(value, torch.Tensor) else value

    return dataclasses.replace(batch, inputs=copy(batch.inputs), extra={k: copy(v) for k, v in batch.extra.items()})


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _holders(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model and every module that holds a dense layer below it (not the layers themselves), outermost first."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if not name or (not is_dense(m) and any(is_dense(c) for c in m.modules()))
    ]


def _prefixed(site: Site, prefix: str) -> Site:
    """``site`` of a part of the model, named from the model's root (``prefix``: the part's path and a dot)."""
    if not prefix:
        return site
    module = site.module if site.module is None or site.found_by in ("traced", "called") else prefix + site.module
    return dataclasses.replace(
        site,
        layer=prefix + site.layer,
        module=module,
        tap=prefix + site.tap,
        shared_with=tuple(prefix + other for other in site.shared_with),
    )


def _direct_sites(model: nn.Module, entry: nn.Module, entry_name: str, sites: tuple[Site, ...]) -> set[str]:
    """The layers whose activation module receives their output on every call by construction: the
    watched module ``entry`` (path ``entry_name``) is a stock ``nn.Sequential``, the layer and its
    (unshared) activation module are its children with nothing but transparent modules (dropout,
    normalisation) between them, and each of these appears once in ``model``. While the entry's forward
    runs (the only time the Monitor counts), ``nn.Sequential.forward`` hands each child the previous one's
    output, so every call of the activation module is a call on the layer's output, as the observer's
    two hooks would find."""
    if type(entry).forward is not nn.Sequential.forward or "forward" in vars(entry):
        return set()
    uses: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        uses[id(module)] = uses.get(id(module), 0) + 1
    names = list(entry._modules)
    direct = set()
    for site in sites:
        if site.found_by not in ("module", "convention") or site.shared_with or not site.module:
            continue
        parent, _, layer = site.layer.rpartition(".")
        act_parent, _, act = site.module.rpartition(".")
        if parent != entry_name or act_parent != entry_name or layer not in names or act not in names:
            continue
        first, last = names.index(layer), names.index(act)
        chain = [entry._modules[name] for name in names[first : last + 1]]
        if first >= last or not all(isinstance(m, TRANSPARENT) for m in chain[1:-1]):
            continue
        if all(m is not None and uses.get(id(m)) == 1 for m in chain):
            direct.add(site.layer)
    return direct


def _is_2d(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 2


class Monitor:
    """Record the dense layers of ``model`` while it trains, into ``run_dir`` (see the module docstring).

    ``every``: record every this many optimizer steps. ``snapshot_every``: save the weights every this
    many steps and at :meth:`close` (default ``10 * every``; 0: never). ``optimizer``: where the learning
    rate is read from when :meth:`step` is not given one. ``nearly_dead_threshold``: the fire rate
    below which a firing neuron counts as nearly dead. ``activations``: ``{layer: kind}`` declared
    activations (as for :func:`inspector.analyze`). ``example``: one batch to find the sites on now
    (else the first training forward's). ``tensorboard``: also write the scalars as TensorBoard
    events into ``run_dir``. ``meta``: extra metadata for the run. ``resume``: continue a run
    already in ``run_dir`` (its steps go on from the last one).
    """

    def __init__(
        self,
        model: nn.Module,
        run_dir: str | os.PathLike[str],
        *,
        every: int = 50,
        snapshot_every: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        nearly_dead_threshold: float = 0.01,
        activations: Mapping[str, str] | None = None,
        example: Any = None,
        tensorboard: bool = False,
        meta: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InspectorError(f"Monitor watches an nn.Module, got {type(model).__name__}")
        if not _whole(every) or every < 1:
            raise InspectorError(f"every must be a whole number of steps of at least 1, got {every!r}")
        if snapshot_every is not None and (not _whole(snapshot_every) or snapshot_every < 0):
            raise InspectorError(f"snapshot_every must be 0 (never) or a whole number of steps, got {snapshot_every!r}")
        linears = {name for name, _ in dense_layers(model)}
        for layer in activations or {}:
            if layer not in linears:  # said now, not inside the first training forward
                raise InspectorError(
                    f"activations= names {layer!r}, which is not an nn.Linear of the model; its linear layers are "
                    f"{', '.join(sorted(linears)[:8]) or 'none'}{' ...' if len(linears) > 8 else ''}"
                )
        if not 0 <= nearly_dead_threshold <= 1:
            raise InspectorError(f"nearly_dead_threshold is a fire rate in [0, 1], got {nearly_dead_threshold}")
        self.model = model
        self.every = int(every)
        self.snapshot_every = 10 * self.every if snapshot_every is None else int(snapshot_every)
        self.optimizer = optimizer
        self.nearly_dead_threshold = float(nearly_dead_threshold)
        self.declared = dict(activations or {})
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InspectorError("tensorboard=True needs TensorBoard: pip install tensorboard") from None
        self.writer = RunWriter(
            run_dir,
            meta={
                "source": "Monitor",
                "every": self.every,
                "snapshot_every": self.snapshot_every,
                "model": type(model).__name__,
                "nearly_dead_threshold": self.nearly_dead_threshold,
                **dict(meta or {}),
            },
            resume=resume,
        )
        if tensorboard:
            self._tb = SummaryWriter(str(run_dir))
        self.run_dir = Path(run_dir)
        self.step_count = self.writer.last_step or 0
        self.sites: tuple[Site, ...] | None = None
        self._guard = _Guard()
        self._observer: SiteObserver | None = None
        self._counts: dict[str, SiteCounts] = {}
        self._weights = {name: weight_parameter(m) for name, m in dense_layers(model)}  # whole norms: any orientation
        self._grad_handles: list[Any] = []
        self._grad_norm: dict[str, torch.Tensor] = {}
        self._grad_finite: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}
        self._counting = False
        self._mask: torch.Tensor | None = None
        self._discovering = False
        # each layer's (fires, rows): in the previous window, and in all the windows before it
        self._previous: dict[str, tuple[np.ndarray, float]] = {}
        self._older: dict[str, tuple[np.ndarray, float]] = {}
        self._warned: set[tuple[str, str]] = set()
        self._last_record = self.step_count
        self._output_loss: torch.Tensor | None = None
        self._closed = False
        self._problem: str | None = None  # why no site is watched, said once at the first record
        self._said_unwatched = False
        self.entry = ""  # the module whose training forwards are watched: the model, or the part the loop calls
        self._candidates: list[Any] = []
        self._holder_names: list[tuple[str, nn.Module]] = []
        try:
            if example is not None:
                self._discover(to_batch(example), "", model)
            else:
                # until the first training forward: a pre-hook on the model and on every module holding a
                # dense layer, so that a loop (or a LightningModule's training_step) calling only a part of
                # the model (``self.net(x)``) is watched there; the outermost one called wins
                for name, module in _holders(model):
                    hook = module.register_forward_pre_hook(self._first_forward(name), with_kwargs=True)
                    self._candidates.append(self._guard.hook(hook))
                    self._holder_names.append((name, module))
            self._arm_grad_hooks()
        except BaseException:
            self.close("failed")
            raise

    # --- hooks -------------------------------------------------------------------------------------

    def _recording_next(self) -> bool:
        return (self.step_count + 1) % self.every == 0

    def _first_forward(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self._discovering or not module.training:
                return
            if self.sites is not None:  # a part outside the watched one runs in training mode too
                self._outside(name)
                return
            # the same call once more (without gradients, in eval mode, on copies of its tensors): a model
            # may need every row (a fixed batch size) and every keyword (labels), and may edit its input
            batch = _call_batch(args, kwargs)
            self._discover(None if batch is None else _copied(batch), name, module)
            self._pre_forward(module, args, kwargs)  # this call's own hooks were fixed before it began

        return hook

    def _outside(self, name: str) -> None:
        """Say once that ``name`` (outside the watched part) trains too; then stop watching for it."""
        for handle in self._candidates:
            handle.remove()
        self._candidates.clear()
        self._holder_names.clear()
        message = (
            f"the loop also runs {f'{name!r}' if name else 'the whole model'} in training mode, but the Monitor "
            f"watches {self.entry!r}, the first part with dense layers it saw train: layers outside it are not "
            "counted; give the Monitor the module the loop calls, or call the whole model from the first step"
        )
        self.writer.event(self.step_count + 1, "warning", "", message)
        log.warning(message)

    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._discovering:
            return
        if not module.training:
            self._counting = False
            return
        self._counting = True
        mask = kwargs.get(MASK_KEY)
        self._mask = mask if _is_2d(mask) else None
        if self._observer is not None:
            self._observer.start_batch()

    def _post_forward(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._discovering:
            return
        self._counting = False
        if isinstance(output, torch.Tensor):  # no loss inside; getattr on a tensor is slow (a C++ miss)
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and module.training:
            self._output_loss = loss.detach()

    def _discover(self, batch: Batch | None, name: str, module: nn.Module) -> None:
        """Find the sites on ``batch``, a call of the part ``name`` (``""``: the model), and watch that part."""
        prefix = f"{name}." if name else ""
        declared = {k[len(prefix) :]: v for k, v in self.declared.items() if k.startswith(prefix)}
        self._discovering = True
        # the extra forward must not move the random streams the training draws from (noise, dropout)
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        try:
            with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
                sites = self._find_sites(module, batch, declared, prefix)
        finally:
            self._discovering = False
        # the parts inside the watched one need no hook any more; those outside it (an enclosing model
        # called later, a second part of the loop) keep theirs until one of them runs: then it is said
        inside = [i for i, (n, _) in enumerate(self._holder_names) if not name or n == name or n.startswith(prefix)]
        for i in sorted(inside, reverse=True):
            self._candidates.pop(i).remove()
            self._holder_names.pop(i)
        self.entry = name
        self.writer.set_meta({"entry": name})
        self._guard.hook(module.register_forward_pre_hook(self._pre_forward, with_kwargs=True))
        self._guard.hook(module.register_forward_hook(self._post_forward))
        self.sites = sites
        scratch = Scratch()
        self._counts = {s.layer: SiteCounts(s, scratch) for s in sites if s.counted}
        self.writer.set_layers([(s.layer, s.in_features, s.out_features, s.activation) for s in sites])
        # a site whose activation module receives the layer's output by construction is watched by one hook
        # on that module; the others by the observer's two (the layer marks its output, the activation
        # module counts what it receives from a marked layer)
        direct = _direct_sites(self.model, module, name, sites)
        for site in sites:
            if site.layer in direct and site.layer in self._counts:
                act = self.model.get_submodule(site.module)  # type: ignore[arg-type]
                self._guard.hook(act.register_forward_hook(self._direct_hook(self._counts[site.layer])))
        observed = tuple(s for s in sites if s.layer not in direct and s.counted)
        self._observer = SiteObserver(self.model, observed, self._on_activation, self._guard) if observed else None

    def _find_sites(
        self, module: nn.Module, batch: Batch | None, declared: dict[str, str], prefix: str
    ) -> tuple[Site, ...]:
        """The sites of ``module`` named from the root; ``()`` (and :attr:`_problem` says why) when none can
        be found: the user's loop goes on either way."""
        try:
            try:
                found = discover_sites(module, batch, declared)
            except Exception as error:  # noqa: BLE001 - fall back to the graph
                if batch is None:
                    raise
                found = discover_sites(module, None, declared)
                self._problem = f"the observed forward failed ({type(error).__name__}: {error})".splitlines()[0]
            return tuple(_prefixed(s, prefix) for s in found)
        except Exception as error:  # noqa: BLE001 - nothing to watch, said once in the run and the log
            self._problem = f"the sites could not be found ({type(error).__name__}: {error})".splitlines()[0]
            return ()

    def _direct_hook(self, counts: SiteCounts) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if self._counting and inputs and isinstance(output, torch.Tensor):
                counts.update(inputs[0], output, self._mask)

        return hook

    def _on_activation(self, layer: str, pre: torch.Tensor, out: torch.Tensor) -> None:
        if self._counting:
            counts = self._counts.get(layer)
            if counts is not None:
                counts.update(pre, out, self._mask)

    def _arm_grad_hooks(self) -> None:
        # only for the backward passes of a step that will be recorded: a Python hook on every
        # parameter of every step would cost more than the rest of the per-step work
        if self._grad_handles or not self._recording_next():
            return
        for name, weight in self._weights.items():
            if weight.requires_grad:
                self._grad_handles.append(weight.register_post_accumulate_grad_hook(self._grad_hook(name)))

    def _disarm_grad_hooks(self) -> None:
        for handle in self._grad_handles:
            handle.remove()
        self._grad_handles.clear()

    def _grad_hook(self, name: str) -> Any:
        def hook(param: torch.Tensor) -> None:
            if param.grad is None:
                return
            grad = param.grad.detach()
            self._grad_norm[name] = torch.linalg.vector_norm(grad.float())  # float() of float32 is the tensor itself
            if name not in self._before:  # the first backward of the step: the weight before its update
                self._before[name] = param.detach().clone()

        return hook

    # --- the public verbs --------------------------------------------------------------------------

    def step(self, loss: Any = None, *, lr: float | None = None) -> bool:
        """Count one optimizer step (call it after ``optimizer.step()``); every ``every`` steps record.
        ``loss``: this step's loss (a tensor or number; read only at a record). ``lr``: the learning rate
        (default: the optimizer's first parameter group's). Returns whether this step was recorded."""
        if self._closed:
            raise InspectorError("this Monitor is closed; create a new one to record more")
        self.step_count += 1
        recorded = self.step_count % self.every == 0
        if recorded:
            self._disarm_grad_hooks()
            self._record(self._output_loss if loss is None else loss, lr)
            if self.snapshot_every and self.step_count % self.snapshot_every == 0:
                self.writer.snapshot(self.step_count, self.model.state_dict())
        self._output_loss = None
        self._arm_grad_hooks()
        return recorded

    def _learning_rate(self, lr: float | None) -> float:
        if lr is not None:
            return float(lr)
        if self.optimizer is not None and self.optimizer.param_groups:
            value = self.optimizer.param_groups[0].get("lr", math.nan)
            return float(value.item() if isinstance(value, torch.Tensor) else value)
        return math.nan

    def _record(self, loss: Any, lr: float | None) -> None:
        step = self.step_count
        scalars: dict[tuple[str, str], float] = {}
        vectors: dict[tuple[str, str], np.ndarray] = {}
        events: list[tuple[str, str, str]] = []
        loss_value = math.nan if loss is None else float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        scalars[("loss", "")] = loss_value
        scalars[("lr", "")] = self._learning_rate(lr)
        if self._starts("", "loss", not math.isfinite(loss_value) and loss is not None):
            events.append(("warning", "", f"the loss is {loss_value} at step {step}"))
        if not self._said_unwatched and not self._counts:
            self._said_unwatched = True
            why = self._problem or (
                "the model has no nn.Linear followed by an activation"
                if self.sites is not None
                else "neither the model nor any part of it holding a dense layer ran a forward in training mode"
            )
            events.append(("warning", "", f"{why}; no layer statistics are recorded (check that the loop calls the "
                           "model in training mode, model.train(), or pass example= one batch)"))  # fmt: skip
        grad_norms: dict[str, float] = {}
        for layer, (weight_norm, grad_norm, ratio) in self._weight_numbers().items():
            scalars[("weight_norm", layer)] = weight_norm
            scalars[("grad_norm", layer)] = grad_norm
            scalars[("update_ratio", layer)] = ratio
            if layer in self._grad_norm:
                grad_norms[layer] = grad_norm
            if self._starts(layer, "grad", layer in self._grad_norm and not math.isfinite(grad_norm)):
                events.append(("warning", layer, f"{layer}: the gradient is not finite at step {step}"))
        finite = [g for g in grad_norms.values() if math.isfinite(g)]
        largest = max(finite, default=0.0)
        for layer, g in grad_norms.items():
            vanishing = largest > 0 and math.isfinite(g) and g < VANISHING * largest
            if self._starts(layer, "vanishing", vanishing):
                events.append(("warning", layer, f"{layer}: its gradient norm {g:.3g} is below {VANISHING:g} of the "
                               f"largest layer's ({largest:.3g}) at step {step}; the gradient vanishes before it "
                               "reaches this layer"))  # fmt: skip
        for site in self.sites or ():
            self._record_site(site, step, scalars, vectors, events)
        self._grad_norm.clear()
        self._before.clear()
        for counts in self._counts.values():
            counts.reset()
        self._last_record = step
        self.writer.record(step, scalars, vectors, events)
        for severity, _layer, message in events:
            log.warning(message) if severity == "warning" else log.info(message)
        if self._tb is not None:
            for (name, layer), value in scalars.items():
                self._tb.add_scalar(f"dense/{layer}/{name}" if layer else f"train/{name}", value, step)
            self._tb.flush()

    def _weight_numbers(self) -> dict[str, tuple[float, float, float]]:
        """Per dense layer ``(weight_norm, grad_norm, update_ratio)`` (NaN where there is none), computed as
        0-d float32 tensors and read back in one transfer (a Python float per tensor is a host read each)."""
        tensors: list[torch.Tensor] = []

        def position(tensor: torch.Tensor | None) -> int:
            """Where ``tensor`` goes in ``tensors`` (-1: none, read as NaN)."""
            if tensor is None:
                return -1
            tensors.append(tensor)
            return len(tensors) - 1

        where: dict[str, tuple[int, int, int]] = {}
        for layer, weight in self._weights.items():
            w = weight.detach().float()  # float() of float32 is the tensor itself: no copy
            before = self._before.get(layer)
            if before is not None:
                before = before.float()
            where[layer] = (
                position(torch.linalg.vector_norm(w)),
                position(self._grad_norm.get(layer)),
                # one pass for the change's norm, with no (out, in) temporary
                position(torch.dist(w, before) / torch.linalg.vector_norm(before) if before is not None else None),
            )
        if not tensors:
            return {}
        try:
            values = torch.stack(tensors).tolist()
        except RuntimeError:  # on several devices
            values = [float(t) for t in tensors]
        values.append(math.nan)  # position -1
        return {layer: (values[i], values[j], values[k]) for layer, (i, j, k) in where.items()}

    def _record_site(
        self,
        site: Site,
        step: int,
        scalars: dict[tuple[str, str], float],
        vectors: dict[tuple[str, str], np.ndarray],
        events: list[tuple[str, str, str]],
    ) -> None:
        layer = site.layer
        nan = math.nan
        dead = nearly = fraction = saturation = zero_rate = nan
        counts = self._counts.get(layer)
        rows = nan if counts is None else float(counts.rows)
        result = counts.finish() if counts is not None else None
        if counts is not None and result is not None:
            fired, other = result
            width = len(fired)
            if rows > 0:
                rate = fired / rows
                # per neuron: what its unit is counted by (the fire rate; a squasher's saturated share; a
                # smooth unit's near-zero share)
                per_neuron = {"squasher": "saturation", "smooth": "zero_rate"}.get(counts.group)
                vectors[(per_neuron or "fire_rate", layer)] = (other / rows if per_neuron else rate).astype(np.float32)
                if counts.group in ("rectifier", "leaky"):
                    dead = float((fired == 0).sum())
                    nearly = float(((fired > 0) & (rate < self.nearly_dead_threshold)).sum())
                    fraction = dead / width
                elif counts.group == "squasher":
                    saturation = float(other.sum() / (rows * width))
                elif counts.group == "smooth":
                    zero_rate = float(other.sum() / (rows * width))
        scalars.update(
            {
                ("dead", layer): dead,
                ("nearly_dead", layer): nearly,
                ("dead_fraction", layer): fraction,
                ("saturation", layer): saturation,
                ("zero_rate", layer): zero_rate,
                ("rows", layer): rows,
            }
        )
        if counts is not None and math.isfinite(fraction) and result is not None and rows > 0:
            died = self._deaths(layer, result[0], rows, counts.samples)
            if died is not None:
                events.append(
                    (
                        "warning",
                        layer,
                        f"{layer}: {100 * died:.0f}% of neurons died between steps {self._last_record} and {step}; "
                        "the learning rate may be too high",
                    )
                )
        if self._starts(layer, "saturation", math.isfinite(saturation) and saturation > SATURATED):
            events.append(("warning", layer, f"{layer}: {100 * saturation:.0f}% of its {site.activation} values are "
                           f"saturated at step {step}; its gradient is nearly zero there"))  # fmt: skip

    def _deaths(self, layer: str, fired: np.ndarray, rows: float, samples: int) -> float | None:
        """The share of ``layer``'s neurons that fired in the previous window and never in this one, when
        that is at least :data:`DEATH_JUMP` of the layer more than chance explains; else ``None``.

        A neuron firing on a share p of rows stays silent on this window's n samples by chance with
        probability at least (1 - p)^n (rows of one sample, a sequence's positions, are not independent:
        counting samples, not rows, errs towards silence by chance). p is estimated from the windows
        before the previous one (the previous one chose the neurons: estimating from it too would bias p
        up), so nothing is said before the third record. The silences must exceed the expected number by
        :data:`DEATH_JUMP` of the layer, and be at most :data:`CHANCE` likely by chance: a learning rate
        of 0 on small batches raises nothing, a real die-off does.
        """
        previous, older = self._previous.get(layer), self._older.get(layer)
        self._previous[layer] = (fired, rows)
        if previous is not None:
            self._older[layer] = previous if older is None else (older[0] + previous[0], older[1] + previous[1])
        if previous is None or older is None or len(previous[0]) != len(fired) or older[1] <= 0:
            return None
        died = (fired == 0) & (previous[0] > 0)
        k = int(died.sum())
        expected = float(np.power(1.0 - older[0][died] / older[1], samples).sum())
        if k - expected < DEATH_JUMP * len(fired) - 1e-9:
            return None
        from scipy.special import pdtrc  # the Poisson tail, without importing all of scipy.stats mid-training

        # k silences or more by chance (Poisson tail of the expected count): small enough to say even
        # after a million records
        if pdtrc(k - 1, expected) > CHANCE:
            return None
        return float(k / len(fired))

    def _starts(self, layer: str, kind: str, on: bool) -> bool:
        """Whether the condition ``kind`` of ``layer`` starts now (again after it stopped): its warning is
        raised once, and only then written (formatting one for every layer at every record costs more)."""
        key = (layer, kind)
        if not on:
            self._warned.discard(key)
            return False
        if key in self._warned:
            return False
        self._warned.add(key)
        return True

    def history(self) -> RunHistory:
        """What the run directory holds now."""
        return read_run(self.run_dir)

    def close(self, status: str = "finished") -> None:
        """Remove every hook, write the final snapshot and mark the run ``status``."""
        if self._closed:
            return
        self._closed = True
        self._disarm_grad_hooks()
        for handle in self._guard.handles:
            handle.remove()
        self._guard.handles.clear()
        try:
            if status == "finished" and self.snapshot_every != 0:
                last = self.step_count
                if last and not self.writer.has_snapshot(last):
                    self.writer.snapshot(last, self.model.state_dict())
        finally:
            if self._tb is not None:
                with contextlib.suppress(Exception):
                    self._tb.close()
            self.writer.close(status)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close("finished" if exc[0] is None else "failed")

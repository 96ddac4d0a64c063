"""A PyTorch Lightning callback that records the dense layers while a LightningModule trains.

::

    from inspector.integrations.lightning import InspectorCallback

    trainer = lightning.Trainer(max_steps=10_000, callbacks=[InspectorCallback(every=50)])
    trainer.fit(module)        # the run: <trainer.log_dir>/inspector (inspector live / read_run)

The :class:`~inspector.live.monitor.Monitor` watches the training forwards of the LightningModule
(``self(x)`` in ``training_step``) or of the part of it that ``training_step`` calls (``self.net(x)``);
validation runs in eval mode and is not counted.

One Monitor step per optimizer step: Lightning's ``trainer.global_step`` counts optimizer steps, and
``on_train_batch_end`` (which fires once per micro-batch under ``accumulate_grad_batches``) steps the
Monitor only when it has moved. The recorded ``loss`` is the mean of ``training_step``'s losses over the
step's micro-batches; the ``lr`` is the first optimizer's first parameter group's, read in
``on_before_optimizer_step``, i.e. the rate that step used (a per-step scheduler has not yet moved it).
A training_step that never calls the module itself records no layer statistics; the callback then
says so once (a warning in the run's events and the ``inspector.live`` logger). Under DDP only global rank 0 records (the counts are that rank's share of each batch); the others
run no hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from inspector.errors import InspectorError
from inspector.integrations._settings import MonitorSettings
from inspector.live.monitor import Monitor

try:
    import lightning.pytorch as pl
except ImportError:  # the older distribution of the same package
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        raise InspectorError(
            "inspector.integrations.lightning needs PyTorch Lightning: pip install lightning"
        ) from None

__all__ = ["InspectorCallback"]


def _closing_status(exception: BaseException) -> str:
    return "stopped" if isinstance(exception, KeyboardInterrupt) else "failed"


class InspectorCallback(MonitorSettings, pl.Callback):
    """Run a :class:`~inspector.live.monitor.Monitor` on the LightningModule during ``trainer.fit``.

    ``run_dir``: the run directory (default ``<trainer.log_dir or default_root_dir>/inspector``; it must
    not hold a run yet). ``every``, ``snapshot_every`` and ``monitor_kwargs`` (``activations=``,
    ``nearly_dead_threshold=``, ``tensorboard=``, ``meta=``...) go to the Monitor. After ``fit``,
    :attr:`run_dir` is where the run was written (``None`` on ranks other than 0).
    """

    # set at each fit's start (on_train_start): the optimizer step last counted, and the losses of the
    # micro-batches since then
    _last_global_step: int
    _losses: list[torch.Tensor]

    def _default_dir(self, trainer: pl.Trainer) -> Path:
        # log_dir broadcasts from rank 0, so every rank asks for it
        return Path(trainer.log_dir or trainer.default_root_dir) / "inspector"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close("failed")  # a fit that died without on_exception (a callback reused)
        run_dir = self.requested_dir or self._default_dir(trainer)
        if not trainer.is_global_zero:
            return
        if self.requested_dir is None:
            run_dir.parent.mkdir(parents=True, exist_ok=True)  # Lightning's own log folder, made early
        kwargs = dict(self.monitor_kwargs)
        meta = {"trainer": "lightning", **dict(kwargs.pop("meta", None) or {})}
        self.monitor = Monitor(
            pl_module,
            run_dir,
            every=self.every,
            snapshot_every=self.snapshot_every,
            optimizer=trainer.optimizers[0] if trainer.optimizers else None,
            meta=meta,
            **kwargs,
        )
        self.run_dir = self.monitor.run_dir

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after a checkpoint's state is restored: steps are counted from where the Trainer is
        self._last_global_step = trainer.global_step
        self._losses = []
        self._lr = None

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.monitor is not None and trainer.optimizers and trainer.optimizers[0].param_groups:
            lr = trainer.optimizers[0].param_groups[0].get("lr")
            if lr is not None:
                self._lr = float(lr.item() if isinstance(lr, torch.Tensor) else lr)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            if pl_module.automatic_optimization:
                # Lightning hands back training_step's loss divided by accumulate_grad_batches
                loss = loss.detach() * trainer.accumulate_grad_batches
            self._losses.append(loss.detach().reshape(()))
        if trainer.global_step == self._last_global_step:
            return  # a micro-batch of an accumulation window: no optimizer step yet
        self._last_global_step = trainer.global_step
        step_loss = torch.stack(self._losses).mean() if self._losses else None
        self._losses.clear()
        self.monitor.step(step_loss, lr=self._lr)
        self._lr = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close("finished")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close(_closing_status(exception))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close("failed")  # only still open when fit ended by a path that skipped both hooks above

    def _close(self, status: str) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.close(status)

"""A Hugging Face ``Trainer`` callback that records the dense layers while a model trains.

::

    from inspector.integrations.transformers import InspectorCallback

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[InspectorCallback(every=50)])
    trainer.train()            # the run: <args.output_dir>/inspector (inspector live / read_run)

One :class:`~inspector.live.monitor.Monitor` step per optimizer step (``on_step_end``, which the
Trainer calls once per optimizer step, after gradient accumulation's micro-batches). The recorded
``loss`` is the model output's ``.loss`` of the step's last training forward (the Monitor takes it
from the forward; with gradient accumulation, the last micro-batch's), the ``lr`` the rate the step
used: the scheduler's ``get_last_lr()[0]`` (or the optimizer's first parameter group's) read in
``on_optimizer_step``, before the Trainer moves the scheduler on. Evaluation runs in eval mode and is
not counted. In a distributed run only the world's process zero records.

The Trainer has no hook for a training that raises: the run then stays ``running`` while the process
lives (``stopped`` once it exits); call :meth:`InspectorCallback.close` with ``"failed"`` to mark it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inspector.errors import InspectorError
from inspector.integrations._settings import MonitorSettings
from inspector.live.monitor import Monitor

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError:
    raise InspectorError(
        "inspector.integrations.transformers needs Hugging Face Transformers: pip install transformers"
    ) from None

__all__ = ["InspectorCallback"]


class InspectorCallback(MonitorSettings, TrainerCallback):
    """Run a :class:`~inspector.live.monitor.Monitor` on the Trainer's model during ``trainer.train()``.

    ``run_dir``: the run directory (default ``<args.output_dir>/inspector``; it must not hold a run
    yet). ``every``, ``snapshot_every`` and ``monitor_kwargs`` (``activations=``,
    ``nearly_dead_threshold=``, ``tensorboard=``, ``meta=``...) go to the Monitor. After training,
    :attr:`run_dir` is where the run was written (``None`` on processes other than zero).
    """

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.close("failed")  # a train() that raised and was called again with this callback
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        if not isinstance(model, torch.nn.Module):
            raise InspectorError("InspectorCallback needs the Trainer's model; the Trainer passed none")
        run_dir = self.requested_dir
        if run_dir is None:
            if not args.output_dir:
                raise InspectorError("InspectorCallback: give it a run_dir, or TrainingArguments an output_dir")
            run_dir = Path(args.output_dir) / "inspector"
            run_dir.parent.mkdir(parents=True, exist_ok=True)  # the Trainer's own output folder, made early
        options = dict(self.monitor_kwargs)
        meta = {"trainer": "transformers", **dict(options.pop("meta", None) or {})}
        self.monitor = Monitor(
            model,
            run_dir,
            every=self.every,
            snapshot_every=self.snapshot_every,
            optimizer=kwargs.get("optimizer"),
            meta=meta,
            **options,
        )
        self.run_dir = self.monitor.run_dir
        self._lr = None

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.monitor is None:
            return
        self._lr = None
        scheduler = kwargs.get("lr_scheduler")
        optimizer = kwargs.get("optimizer")
        if scheduler is not None and hasattr(scheduler, "get_last_lr"):
            self._lr = float(scheduler.get_last_lr()[0])
        elif optimizer is not None and optimizer.param_groups:
            lr = optimizer.param_groups[0].get("lr")
            if lr is not None:
                self._lr = float(lr.item() if isinstance(lr, torch.Tensor) else lr)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.step(lr=self._lr)
            self._lr = None

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.close("finished")

    def close(self, status: str = "finished") -> None:
        """Close the Monitor (its hooks removed, the run marked ``status``); nothing when none is open."""
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.close(status)

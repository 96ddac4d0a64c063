"""Trainer callbacks that run a :class:`~inspector.live.monitor.Monitor` for you.

- :mod:`inspector.integrations.lightning`: ``InspectorCallback`` for PyTorch Lightning
  (``pip install lightning``)::

      trainer = lightning.Trainer(callbacks=[InspectorCallback(every=50)])

- :mod:`inspector.integrations.transformers`: ``InspectorCallback`` for the Hugging Face
  ``Trainer`` (``pip install transformers``)::

      trainer = transformers.Trainer(..., callbacks=[InspectorCallback(every=50)])

Each callback opens a Monitor on the model when training starts, counts one step per optimizer
step (gradient accumulation's micro-batches are not steps), hands it the step's loss and learning
rate, and closes the run when training ends. This package imports neither trainer: import the
submodule of the one you use (``import inspector`` never imports them).
"""

"""Analyses look, they never touch: eval mode inside, everything restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle


class _Guard:
    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []

    def hook(self, handle: RemovableHandle) -> RemovableHandle:
        """Register a hook handle to be removed when the guarded block ends."""
        self.handles.append(handle)
        return handle


@contextlib.contextmanager
def inspecting(model: nn.Module) -> Iterator[_Guard]:
    """Put ``model`` in eval mode; on exit (also on error) remove hooks and restore
    ``training`` and every parameter's ``requires_grad``."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    guard = _Guard()
    model.eval()
    try:
        yield guard
    finally:
        for handle in guard.handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
        for p, flag in grads.items():
            p.requires_grad_(flag)

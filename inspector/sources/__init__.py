"""Checkpoint readers: one per file format behind one protocol (:class:`TensorSource`), chosen by
:func:`open_source` from the file's bytes. See docs/formats.md."""

from __future__ import annotations

from inspector.sources.base import Contents, TensorSource
from inspector.sources.registry import READERS, open_source, register

__all__ = ["READERS", "Contents", "TensorSource", "open_source", "register"]

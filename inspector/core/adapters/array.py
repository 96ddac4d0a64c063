"""Arrays (images and any other float shape): float inputs ``(n, C, H, W)``, ``(n, T, E)``, ..."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from inspector.core.adapters.base import InputAdapter


@dataclass(frozen=True)
class ArrayAdapter(InputAdapter):
    """Float inputs of any shape but ``(n, d)``: attributed at the input from an all-zero baseline
    (the attribution has the input's shape), importance drawn as a map on the input grid, an
    element named by its position ``(c, h, w)``."""

    kind: ClassVar[str] = "array"
    description: ClassVar[str] = "arrays (images)"
    display: ClassVar[str] = "image"

    @classmethod
    def accepts(cls, inputs: torch.Tensor) -> bool:
        return inputs.is_floating_point() and inputs.dim() != 2

    @classmethod
    def element_label(cls, index: int, input_shape: tuple[int, ...]) -> str | None:
        if input_shape and index < math.prod(input_shape):
            return "(" + ", ".join(str(int(i)) for i in np.unravel_index(index, input_shape)) + ")"
        return None

    @classmethod
    def map_shape(cls, input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if len(input_shape) in (2, 3):
            return tuple(input_shape)
        return super().map_shape(input_shape, image_shape)

"""The dtype the census and evaluation forward passes run in: ``AnalysisOptions.dtype`` / ``--dtype``.

``fp32`` (the default) runs the model as it is, in its own dtype. ``bf16`` and ``fp16`` run the
census, the evaluation, the death timeline and pruning's evaluations on a **copy of the model
cast to that dtype** (its parameters and buffers), with the floating inputs cast to match, as
Hugging Face's ``torch_dtype=``, lm-eval's ``dtype=`` and vLLM's ``--dtype`` run a model: every
operation in the reduced dtype, the model as it would be deployed. The caller's model is not
touched. Importance (Captum attributions), conductance and the what-if curves stay float32 on the
original model: their gradients and sums are not meant to be approximate.

Why a cast copy rather than ``torch.autocast``: it is what ``--dtype`` means to those tools' users,
and it needs nothing from the statistics code. Autocast would have to be entered around each
``batch.call(model)`` inside the census and evaluation loops, not around them (the census's finish,
its PCA, is out-of-place float32 matmuls that autocast would run in bf16), and the hooks that count
run inside the forward, so the counting would rely on staying in-place ops that autocast skips.
With a cast copy every statistic stays in float32 / float64 whatever the forward dtype: the census
casts each hooked activation to float32 before comparing and summing it, the evaluation casts the
logits to float32 and regression outputs to float64.

Measured on a 2-core AVX-512 CPU without bf16 units (torch 2.13), a 256-256-256-10 MLP at batch
256: 370 us per forward in fp32, 1640 us as a bf16 copy, 1730 us under bf16 autocast, 4470 us as
an fp16 copy. fp16 is allowed on a CPU (torch 2.13 runs it, correctly, only slowly: it reproduces
a GPU fp16 deployment's counts); reduced dtypes are a speed-up on GPUs (and CPUs with AMX /
AVX512-BF16), not on CPUs without them. The cost of the copy is memory: the parameters once more
in the reduced dtype (half of their fp32 bytes).

A reduced dtype rounds the inputs and weights (bf16 keeps 8 significant bits), so a neuron whose
pre-activation is a small difference of large terms can read as never firing: the activations section
(:mod:`inspector.analysis.sections.activations`) reruns the census in float32 on the first
:data:`CHECK_SAMPLES` samples and says where a dead count changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from inspector.errors import InspectorError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECK_SAMPLES = 512  # the head of the data a reduced-dtype census is checked against float32 on


def torch_dtype(name: str) -> torch.dtype:
    """The ``torch.dtype`` of ``fp32``, ``bf16`` or ``fp16``; any other name is a one-line error."""
    if name not in DTYPES:
        raise InspectorError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[name]


def is_reduced(name: str) -> bool:
    return torch_dtype(name) != torch.float32


def forward_model(model: nn.Module, name: str) -> nn.Module:
    """The module the census and evaluation run: ``model`` itself for ``fp32``, else a copy cast to ``name``."""
    if not is_reduced(name):
        return model
    try:
        return copy.deepcopy(model).to(torch_dtype(name))
    except Exception as error:  # a module that cannot be copied (open handles, generators)
        raise InspectorError(
            f"--dtype {name} runs a cast copy of the model, and the model could not be copied "
            f"({type(error).__name__}: {error}); use --dtype fp32"
        ) from error

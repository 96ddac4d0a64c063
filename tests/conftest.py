from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """Tests compare floats bit for bit; keep torch's global RNG state from leaking between tests."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)

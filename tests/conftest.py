from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """Tests compare floats bit for bit; keep torch's global RNG state from leaking between tests."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


def pytest_setup_options():
    """Chrome options for dash_duo: Debian's chromium, headless-friendly, no background network."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in (
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    import os

    if not os.environ.get("DISPLAY"):  # no screen: headless even when pytest was run without --headless
        options.add_argument("--headless=new")
    for binary in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if os.path.exists(binary):
            options.binary_location = binary
            break
    return options


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The built-in demo (analysis, checkpoint, evaluation data), built once per test session."""
    from dashboards.demo import load_demo

    return load_demo(tmp_path_factory.mktemp("demo-cache"), log=lambda _: None)

"""tokens.html renders in headless Chromium, offline, and the screenshot shows the token colours."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from signal_support import synthetic_document

from sdpo_exp.signal.colors import advantage_hex
from sdpo_exp.signal.html import write_tokens_html

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser binary; installed with apt-get (Debian package `chromium`) when missing."""
    found = _find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and this machine has no apt-get to install it")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0 and command[1] == "install":
            pytest.fail(f"could not install chromium: {proc.stderr[-2000:]}")
    found = _find_chromium()
    assert found, "apt-get installed chromium but no binary is on PATH"
    return found


def screenshot(chromium: str, html_path, png_path, profile_dir, size=(1200, 1400)) -> np.ndarray:
    proc = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile_dir}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png_path}",
            html_path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png_path.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return imread(png_path)[..., :3]


def _fraction_near(image: np.ndarray, hex_color: str, tol: float = 0.02) -> float:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return float((np.abs(image - target).max(axis=-1) < tol).mean())


def test_tokens_page_renders_with_token_colours(chromium, tmp_path):
    document = synthetic_document(n_cases=3, length=40)
    limit = 2.0  # |A| reaches 3: many tokens are clipped to the two extreme colours
    html = write_tokens_html(document, tmp_path / "tokens.html", limit)
    image = screenshot(chromium, html, tmp_path / "shot.png", tmp_path / "profile")
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    assert image.std() > 0.05  # not blank
    colours = np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert _fraction_near(image, advantage_hex(limit, limit)) > 0.002  # strongest blue tokens
    assert _fraction_near(image, advantage_hex(-limit, limit)) > 0.002  # strongest red tokens


def test_blank_page_is_detected(chromium, tmp_path):
    """The checks above can fail: a page without tokens has none of the token colours."""
    html = tmp_path / "empty.html"
    html.write_text("<!DOCTYPE html><html><body></body></html>")
    image = screenshot(chromium, html, tmp_path / "shot.png", tmp_path / "profile")
    assert image.std() < 0.01
    assert _fraction_near(image, advantage_hex(2.0, 2.0)) == 0.0

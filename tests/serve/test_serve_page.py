"""The chat page in headless Chromium (Debian's, through Playwright; nothing is downloaded): a
conversation typed into it, and after the follow-up the first reply's tokens coloured with the
advantages the server computed. The slow test makes the docs screenshot with SmolLM2 (`SDPO_SERVE_SCREENSHOT=FILE`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from matplotlib.image import imread
from serve_support import serve_in_process

from conftest import CACHE_DIR, cli

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture()
def browser_page(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: `apt-get install -y chromium` (.ci/run does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
    with sync_api.sync_playwright() as playwright:
        # launch() starts the browser with a fresh temporary profile of its own
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        try:
            yield page
        finally:
            browser.close()


def _rgb_hex(css: str) -> str:
    r, g, b = (int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def type_conversation(page, url: str, turns: list[str], timeout_ms: float = 120_000) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#status:not(:text('connecting…'))", timeout=timeout_ms)
    for k, text in enumerate(turns, start=1):
        page.fill("#input", text)
        page.press("#input", "Enter")
        page.wait_for_function(
            f"document.querySelectorAll('.msg.assistant').length >= {k}", timeout=timeout_ms
        )
        if k > 1:
            page.wait_for_function(f"document.querySelectorAll('.msg.assistant .signal').length >= {k - 1}",
                                   timeout=timeout_ms)  # fmt: skip
        page.wait_for_function("!document.getElementById('send').disabled", timeout=timeout_ms)


def test_page_shows_the_heatmap_after_the_follow_up(compose, tmp_path, browser_page):
    page = browser_page
    with serve_in_process(compose, tmp_path / "run") as served:
        type_conversation(page, served.url, ["Tell me about the sea."])
        assert page.locator(".signal").count() == 0  # no follow-up yet, no signal
        type_conversation(page, served.url, ["Tell me about the sea.", "Too long; one sentence please."])
        replies = page.locator(".msg.assistant")
        assert replies.count() == 2
        first_id = replies.nth(0).get_attribute("data-completion-id")
        signal = httpx.get(f"{served.url}/v1/sdpo/signal/{first_id}", timeout=60).json()
        spans = replies.nth(0).locator(".signal .t")
        assert spans.count() == len(signal["tokens"]) > 0
        colours = spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
        assert [_rgb_hex(c) for c in colours] == signal["colors"]
        values = spans.evaluate_all("els => els.map(e => Number(e.dataset.advantage))")
        np.testing.assert_allclose(values, signal["advantages"], rtol=1e-6)
        assert replies.nth(1).locator(".signal").count() == 0  # the latest reply is not answered yet
        rows = (tmp_path / "run" / "interactions.jsonl").read_text().splitlines()
        assert len(rows) == 1 and "Too long; one sentence please." in rows[0]
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
    image = imread(shot)[..., :3]
    assert image.std() > 0.05
    strongest = {signal["colors"][i] for i in np.argsort(np.abs(signal["advantages"]))[-3:]}
    found = {c for c in strongest if _fraction(image, c) > 0}
    assert found, "the strongest token colours must be on the screenshot"


@pytest.mark.slow
def test_page_with_smollm2_learning_online(tmp_path, browser_page):
    """`python run.py task=serve` with SmolLM2 (greedy replies, an update after every answer): the page
    shows both answered replies' heatmaps and the new weights (the docs' screenshot:
    `SDPO_SERVE_SCREENSHOT=docs/images/serve_page.png pytest -m slow tests/serve/test_serve_page.py`)."""
    page, run_dir = browser_page, tmp_path / "run"
    with open(tmp_path / "serve.log", "w") as log:
        proc = cli(["task=serve", "task.port=0", "task.learn=online", "task.update_every=1", "generation=greedy",
                    "generation.max_new_tokens=48", f"hydra.run.dir={run_dir}"], stdout=log, stderr=subprocess.STDOUT,
                   env={"SDPO_CACHE_DIR": str(CACHE_DIR), "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "server.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[
                -3000:
            ]
            time.sleep(0.5)
        url = json.loads((run_dir / "server.json").read_text())["url"]
        turns = ["What is the capital of France?", "Answer in one short sentence, without a greeting.",
                 "Good. Now the capital of Italy, same style."]  # fmt: skip
        type_conversation(page, url, turns, timeout_ms=600_000)
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('2 updates')", timeout=600_000
        )
        assert page.locator(".msg.assistant .signal").count() == 2
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    assert len((run_dir / "interactions.jsonl").read_text().splitlines()) == 2
    if os.environ.get("SDPO_SERVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["SDPO_SERVE_SCREENSHOT"])


def _fraction(image: np.ndarray, hex_color: str, tol: float = 0.02) -> float:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return float((np.abs(image - target).max(axis=-1) < tol).mean())

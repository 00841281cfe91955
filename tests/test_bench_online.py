"""benchmarks/online_loop.py in its tiny mode, so that the script cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_the_online_loop_benchmark_runs_and_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    out = tmp_path / "benchmarks_online.json"
    args = ["--tiny", "--interactions", "16", "--backends", "hf,vllm", "--out-dir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "online_loop.py"), *args], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    hf, vllm = result["rows"]
    assert hf["backend"] == "hf" and hf["interactions"] == 16 and hf["batches"] == 1  # the demo's batch of 16
    assert hf["interactions_per_minute"] > 0 and hf["update_seconds"] > 0 and hf["generate_seconds"] > 0
    assert "tiny_random" in vllm["skipped"]
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "## The online loop" in text
    assert "| hf | 16 |" in text
    # a second run replaces the section instead of adding another
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "online_loop.py"), *args], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    assert doc.read_text().count("## The online loop") == 1

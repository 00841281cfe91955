"""benchmarks/online_loop.py in its tiny mode, so that the script cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = str(REPO / "benchmarks" / "online_loop.py")


def test_the_online_loop_benchmark_runs_and_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    out = tmp_path / "benchmarks_online.json"
    args = ["--tiny", "--cases", "demo,api", "--interactions", "16", "--api-interactions", "32",
            "--api-concurrency", "8", "--backends", "hf,vllm", "--out-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    hf, vllm, seq, over = result["rows"]
    assert hf["backend"] == "hf" and hf["interactions"] == 16 and hf["batches"] == 1  # the demo's batch of 16
    assert hf["interactions_per_minute"] > 0 and hf["update_seconds"] > 0 and hf["generate_seconds"] > 0
    assert "tiny_random" in vllm["skipped"]

    # every phase's share of the run, from the run's own timers; they add up to the whole
    for row in (hf, seq, over):
        shares = row["shares"]
        assert set(shares) == {"generation", "simulation", "update", "sync", "evaluation", "other"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
        assert shares["generation"] == pytest.approx(row["generate_seconds"] / row["run_seconds"], abs=0.01)
        assert row["run_seconds"] == pytest.approx(row["train_seconds"] + row["eval_seconds"], abs=0.02)
    assert hf["simulate_seconds"] < 0.5  # the rule-based user answers in microseconds

    # the API user: same interactions with and without the overlap, the calls timed, one batch stale
    assert (seq["variant"], over["variant"]) == ("calls 8 at a time", "calls 8 at a time + overlap")
    assert seq["interactions"] == over["interactions"] == 32 and seq["batches"] == over["batches"] == 2
    assert seq["simulate_seconds"] > 0 and seq["simulate_wait_seconds"] == pytest.approx(
        seq["simulate_seconds"]
    )
    assert seq["stale_batches"] == 0 and over["stale_batches"] == 1
    assert result["api_calls_at_once_max"] >= 2 and "s to the first token" in result["latency"]
    (compare,) = result["overlap"]
    assert compare["max_concurrency"] == 8
    assert compare["ratio_run"] == pytest.approx(over["run_seconds"] / seq["run_seconds"], abs=0.001)
    assert compare["shorter_by_more_than_20_percent"] == (compare["ratio_run"] < 0.8)

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "## The online loop" in text
    assert (
        "| demo, rule-based user (hf) | 16 (1) |" in text
        and "| api, calls 8 at a time + overlap | 32 (2) |" in text
    )
    assert "| calls at once | sequential run s | overlapped run s |" in text
    # a second run replaces the section instead of adding another
    subprocess.run([sys.executable, SCRIPT, "--tiny", "--cases", "demo", "--backends", "hf", "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    assert doc.read_text().count("## The online loop") == 1
    assert "| api, calls 8" not in doc.read_text()

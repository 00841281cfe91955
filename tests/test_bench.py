"""`benchmarks/step.py --tiny` (`make bench`'s script) runs every part end to end, so that it cannot rot.
No timing is asserted; only that every part ran, agreed where it must, and wrote its results."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO

PARTS = {"step", "teacher", "trl", "scaling", "realistic"}


def test_the_step_benchmark_runs_every_part_in_tiny_mode(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    args = [sys.executable, str(REPO / "benchmarks" / "step.py"), "--tiny", "--out-dir", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "benchmarks_step.json").read_text())
    assert results["tiny"] and set(results["parts"]) == PARTS
    assert {"date", "cpu", "torch", "transformers", "load_average"} <= set(results["machine"])
    parts = results["parts"]
    assert set(parts["step"]["methods"]) == {"naive", "ours"}
    assert set(parts["teacher"]["methods"]) == {"naive", "plain", "shared"}
    assert parts["teacher"]["max_abs_diff_plain_shared"] < 1e-4  # tiny_random is float32
    for part in ("step", "teacher"):
        for found in parts[part]["methods"].values():
            assert found["wall_s"] > 0 and found["cpu_s"] >= 0 and len(found["runs"]) == 1
    trl = parts["trl"]
    if "skipped" in trl:  # TRL is the optional `bench` extra
        assert "trl.experimental.sdpo" in trl["skipped"]
    else:
        assert set(trl["methods"]) == {"naive", "ours", "trl"}
    scaling = parts["scaling"]
    assert [p["sweep"] for p in scaling["points"]] == ["context", "context", "completion", "completion"]
    assert set(scaling["budget"]) == {"budget_mib", "naive", "ours"}

    realistic = parts["realistic"]
    expected = {"naive", "ours_defaults", "ours_plain"} | (
        {"trl"} if "skipped" not in realistic["trl"] else set()
    )
    assert set(realistic["methods"]) == expected and realistic["micro_batches"] == 2
    for found in realistic["methods"].values():
        assert found["wall_s"] > 0 and found["tokens_per_s"] > 0 and len(found["runs"]) == 1
    values = [found["value"] for found in realistic["methods"].values()]
    assert max(values) - min(values) < 1e-3  # the same loss on the same initial weights (float32)
    rows = realistic["lengths"]["rows"]
    assert len(rows) == 4 and len({(r["context"], r["completion"], r["followup"]) for r in rows}) > 1
    assert len(set(realistic["lengths"]["student_context_tokens"])) > 1  # lengths vary across rows
    for side in ("defaults", "plain"):
        assert set(realistic["config"][side]) >= {"loss.shared_prefix", "trainer.packing"}
    assert realistic["config"]["plain"]["loss.shared_prefix"] is False

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "**Whole offline step**" in text
    assert "**Whole step on lengths of logged conversations**" in text
    assert (tmp_path / "benchmarks_scaling.png").stat().st_size > 0
    # one part measured again: one section still, the other parts' figures kept, the re-run named
    subprocess.run(args + ["--part", "teacher"], check=True, capture_output=True, timeout=600)
    text = doc.read_text()
    assert text.count("<!-- step-results:start -->") == 1 and "**Whole offline step**" in text
    assert "Parts measured again later with `--part`: teacher (" in text
    assert "Measured again (teacher) on " in text and "CPU bf16 instructions: " in text
    again = json.loads((tmp_path / "benchmarks_step.json").read_text())
    assert set(again["parts"]) == PARTS and again["parts"]["step"] == parts["step"]
    assert set(again["remeasured"]) == {"teacher"}


def test_the_length_sampler_is_seeded_clipped_and_follows_its_source():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from lengths import lognormal_params, sample_rows

    mu, sigma = lognormal_params(441.34, 410.91)
    assert abs(math.exp(mu + sigma**2 / 2) - 441.34) < 1e-6  # the log-normal keeps the stated mean
    rows = sample_rows(2000, seed=3, max_context=2048, max_completion=256, max_followup=128)
    assert rows == sample_rows(2000, seed=3, max_context=2048, max_completion=256, max_followup=128)
    assert rows != sample_rows(2000, seed=4, max_context=2048, max_completion=256, max_followup=128)
    assert max(r.context for r in rows) <= 2048 and max(r.completion for r in rows) == 256
    assert max(r.followup for r in rows) <= 128 and min(r.context for r in rows) >= 1
    assert all(len(r.history) % 2 == 1 for r in rows)  # alternating turns ending with a user message
    assert any(r.dropped_exchanges for r in rows)  # long histories lose whole oldest exchanges
    median_completion = sorted(r.completion for r in sample_rows(4001, seed=0))[2000]
    assert 290 < median_completion < 360  # the assistant turns' median exp(mu) = 323 tokens

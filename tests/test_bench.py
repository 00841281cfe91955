"""`benchmarks/step.py --tiny` (`make bench`'s script) runs every part end to end, so that it cannot rot.
No timing is asserted; only that every part ran, agreed where it must, and wrote its results."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

PARTS = {"step", "teacher", "trl", "scaling"}


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

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "**Whole offline step**" in text
    assert (tmp_path / "benchmarks_scaling.png").stat().st_size > 0
    # one part measured again: one section still, the other parts' figures kept, the re-run named
    subprocess.run(args + ["--part", "teacher"], check=True, capture_output=True, timeout=600)
    text = doc.read_text()
    assert text.count("<!-- step-results:start -->") == 1 and "**Whole offline step**" in text
    assert "Parts measured again later with `--part`, on the same machine: teacher (" in text
    again = json.loads((tmp_path / "benchmarks_step.json").read_text())
    assert set(again["parts"]) == PARTS and again["parts"]["step"] == parts["step"]
    assert set(again["remeasured"]) == {"teacher"}

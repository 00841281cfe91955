"""Pure parts of the trainer: batch geometry, data plan, schedule, checkpoint discovery, resume checks."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from sdpo_exp.config.schemas.trainer import Optimizer, Scheduler
from sdpo_exp.errors import ConfigError
from sdpo_exp.training.checkpoint import COMPLETE, STATE_FILE, complete_checkpoints, latest_checkpoint
from sdpo_exp.training.data_plan import DataPlan, epoch_order
from sdpo_exp.training.evaluation import eval_batches
from sdpo_exp.training.geometry import BatchGeometry, batch_geometry
from sdpo_exp.training.metrics import MetricSums
from sdpo_exp.training.optim import build_scheduler, check_optimizer_available, lr_factor, warmup_steps
from sdpo_exp.training.resume import check_compatible, truncate_metrics


def _trainer(**kw):
    base = dict(per_device_batch_size=4, grad_accum_steps=1, global_batch_size=None)
    return SimpleNamespace(**{**base, **kw})


def test_geometry_derives_accumulation_from_global_batch():
    assert batch_geometry(_trainer(global_batch_size=32, per_device_batch_size=4), 2) == BatchGeometry(
        4, 4, 2
    )
    assert batch_geometry(_trainer(global_batch_size=32, per_device_batch_size=2), 8).accumulation == 2
    assert batch_geometry(_trainer(grad_accum_steps=3), 2).global_batch == 24
    with pytest.raises(ConfigError, match="not a multiple"):
        batch_geometry(_trainer(global_batch_size=30, per_device_batch_size=4), 2)
    with pytest.raises(ConfigError, match="not a multiple"):
        batch_geometry(_trainer(global_batch_size=4, per_device_batch_size=4), 2)


@pytest.mark.parametrize(
    ("n", "per_device", "accum", "procs"), [(10, 2, 2, 1), (10, 1, 2, 2), (7, 2, 1, 2), (32, 4, 2, 4)]
)
def test_each_epoch_uses_every_example_once(n, per_device, accum, procs):
    plan = DataPlan(n, BatchGeometry(per_device, accum, procs), seed=3)
    assert plan.steps_per_epoch == math.ceil(n / (per_device * accum * procs))
    for epoch in range(2):
        seen = []
        for k in range(plan.steps_per_epoch):
            step = epoch * plan.steps_per_epoch + k
            from_slots = []
            for rank in range(procs):
                micro = plan.micro_batches(step, rank)
                assert len(micro) == accum  # every process runs the same number of micro-batches
                assert all(len(mb) <= per_device for mb in micro)
                for mb in micro:
                    from_slots += mb
            assert sorted(from_slots) == sorted(plan.step_items(step))
            seen += from_slots
        assert sorted(seen) == list(range(n))


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(50, seed=1, epoch=0)
    assert (a == epoch_order(50, seed=1, epoch=0)).all()
    assert not (a == epoch_order(50, seed=1, epoch=1)).all()
    assert not (a == epoch_order(50, seed=2, epoch=0)).all()
    plan = DataPlan(50, BatchGeometry(4, 1, 1), seed=1)
    assert plan.step_items(13) == DataPlan(50, BatchGeometry(4, 1, 1), seed=1).step_items(13)


def test_short_last_step_leaves_an_empty_filler_slot():
    plan = DataPlan(5, BatchGeometry(2, 2, 1), seed=0)  # steps of 4, the last one has 1 example
    (first, second) = plan.micro_batches(1, 0)
    assert len(first) == 1 and second == []


@pytest.mark.parametrize("kind", list(Scheduler))
def test_schedule_against_a_direct_formula(kind):
    total, warm = 20, warmup_steps(20, 0.1)
    assert warm == 2
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=2.0)
    sched = build_scheduler(opt, SimpleNamespace(lr_scheduler=kind, warmup_ratio=0.1), total)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = []
    for step in range(total):
        if step < warm:
            f = (step + 1) / warm
        elif kind == Scheduler.constant:
            f = 1.0
        elif kind == Scheduler.linear:
            f = 1 - (step - warm) / (total - warm)
        else:
            f = 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        expected.append(2.0 * f)
    assert seen == pytest.approx(expected)
    assert lr_factor(Scheduler.cosine, warm, total, warm) == 1.0


def test_8bit_adamw_without_bitsandbytes_or_gpu_is_a_clear_error():
    cfg = SimpleNamespace(optimizer=Optimizer.adamw_8bit)
    with pytest.raises(ConfigError, match="adamw_8bit") as err:
        check_optimizer_available(cfg, torch.device("cpu"))
    assert "trainer.optimizer=adamw" in str(err.value)
    check_optimizer_available(SimpleNamespace(optimizer=Optimizer.adamw), torch.device("cpu"))


def _fake_checkpoint(root, step, complete=True):
    path = root / "checkpoints" / f"step-{step}"
    path.mkdir(parents=True)
    (path / STATE_FILE).write_text("{}")
    if complete:
        (path / COMPLETE).write_text("ok")
    return path


def test_only_complete_checkpoints_count(tmp_path):
    _fake_checkpoint(tmp_path, 2)
    newest = _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 12, complete=False)
    (tmp_path / "checkpoints" / ".tmp-step-14").mkdir()
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [2, 10]
    assert latest_checkpoint(tmp_path) == newest
    assert latest_checkpoint(tmp_path / "elsewhere") is None


def test_resume_refuses_changed_settings_and_allows_a_longer_run(tmp_path):
    saved = {"seed": 1, "trainer.lr": 1e-5, "global_batch": 8, "trainer.max_steps": 10}
    with pytest.raises(ConfigError, match="trainer.lr"):
        check_compatible(saved, {**saved, "trainer.lr": 2e-5}, tmp_path)
    with pytest.raises(ConfigError, match="global_batch"):
        check_compatible(saved, {**saved, "global_batch": 16}, tmp_path)
    check_compatible(saved, {**saved, "trainer.max_steps": 20}, tmp_path)


def test_resume_allows_options_that_only_change_how_a_step_is_computed(tmp_path):
    """A run started before loss.shared_prefix became the default (or with another chunk size) resumes;
    a change of what the loss computes does not."""
    loss = {"name": "pg", "shared_prefix": False, "chunk_size": 128, "ignore_first_k": 0}
    saved = {"seed": 1, "loss": loss, "global_batch": 8}
    check_compatible(saved, {**saved, "loss": {**loss, "shared_prefix": True, "chunk_size": 64}}, tmp_path)
    with pytest.raises(ConfigError, match="loss"):
        check_compatible(saved, {**saved, "loss": {**loss, "ignore_first_k": 2}}, tmp_path)


def test_truncate_metrics_keeps_rows_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "x": s} for s in (0, 1, 2, 3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "x"')  # a cut last line
    with open(path, "a") as appender:  # as the tracker holds it
        assert truncate_metrics(path, 2) == 3
        appender.write(json.dumps({"step": 3, "x": "new"}) + "\n")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2, 3] and lines[-1]["x"] == "new"


def test_metric_sums_pool_by_tokens_and_counts_and_the_loss_by_its_units():
    sums = MetricSums()
    sums.add(
        {"loss_sum": 3.0, "loss_units": 2, "adv_mean": 0.5, "num_tokens": 10, "completions_truncated": 1},
        sequences=2,
    )
    sums.add(
        {"loss_sum": 4.0, "loss_units": 5, "adv_mean": 2.0, "num_tokens": 30, "completions_truncated": 0},
        sequences=1,
    )
    acc = SimpleNamespace(num_processes=1)
    out = sums.reduce(acc)
    assert out["loss"] == pytest.approx((3.0 + 4.0) / (2 + 5))
    assert "loss_sum" not in out and "loss_units" not in out
    assert out["adv_mean"] == pytest.approx((0.5 * 10 + 2.0 * 30) / 40)
    assert out["num_tokens"] == 40 and out["completions_truncated"] == 1


def test_eval_batches_are_equal_in_number_across_processes():
    for n in (1, 5, 22):
        per = [eval_batches(n, 4, rank, 3) for rank in range(3)]
        assert len({len(p) for p in per}) == 1
        assert sorted(i for p in per for b in p for i in b) == list(range(n))


def test_max_steps_minus_one_means_no_limit():
    plan = DataPlan(10, BatchGeometry(2, 1, 1), seed=0)
    assert plan.total_steps(epochs=2, max_steps=-1) == plan.total_steps(epochs=2, max_steps=None) == 10
    assert plan.total_steps(epochs=2, max_steps=3) == 3


def test_precision_auto_is_bf16_only_where_the_machine_computes_in_it():
    """trainer.precision=auto (the demos' setting) follows model.dtype=auto's rule, so that a CPU
    without bf16 kernels trains in float32 instead of emulating bf16 (~80x slower matmuls on AVX2)."""
    import torch

    from sdpo_exp.config.schemas.trainer import Precision
    from sdpo_exp.models import resolve_dtype
    from sdpo_exp.training.distributed import resolve_precision

    native = resolve_dtype("auto", "cuda" if torch.cuda.is_available() else "cpu") == torch.bfloat16
    assert resolve_precision("auto") == (Precision.bf16 if native else Precision.no)
    assert resolve_precision(Precision.auto) == resolve_precision("auto")
    assert resolve_precision("bf16") == Precision.bf16 and resolve_precision("no") == Precision.no

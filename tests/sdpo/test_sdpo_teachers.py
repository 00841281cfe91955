"""Teachers: live, EMA, base, trust-region; LoRA via the adapter switch; state for exact resume."""

from __future__ import annotations

import pytest
import torch
from sdpo_testutils import reference_logprobs, tiny_lm
from test_sdpo_losses import VOCAB, toy_batch

from sdpo_exp.config.schemas.loss import PGLossConfig, TeacherConfig, TeacherKind, TopKLossConfig
from sdpo_exp.errors import ConfigError, SdpoError
from sdpo_exp.sdpo.objective import SDPOObjective, build_objective


def pg(kind: str, **teacher) -> PGLossConfig:
    return PGLossConfig(teacher=TeacherConfig(kind=TeacherKind(kind), **teacher))


def teacher_logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch.teacher_input_ids, attention_mask=batch.teacher_attention_mask).logits


def ref_teacher_logprobs(model, batch):
    return reference_logprobs(
        teacher_logits(model, batch), batch.teacher_prompt_lens, batch.completion_ids, batch.completion_mask
    )


def perturb(model, seed: int, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_base_teacher_uses_the_initial_weights_and_leaves_the_model_as_it_was():
    batch = toy_batch(5)
    model = tiny_lm(VOCAB, torch.float64)
    base_obj, live_obj = SDPOObjective(model, pg("base")), SDPOObjective(model, pg("live"))
    perturb(model, 1)  # "training" moved the weights
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = base_obj(batch)
    initial = tiny_lm(VOCAB, torch.float64)
    assert torch.allclose(out.teacher_logprobs, ref_teacher_logprobs(initial, batch), atol=1e-10)
    assert torch.allclose(live_obj(batch).teacher_logprobs, ref_teacher_logprobs(model, batch), atol=1e-10)
    assert not torch.allclose(out.teacher_logprobs, live_obj(batch).teacher_logprobs, atol=1e-4)
    for n, p in model.named_parameters():
        assert torch.equal(p, after[n]), n
    out.loss.backward()  # the student gradient reaches the current parameters
    assert all(p.grad is not None for p in model.parameters())


def test_ema_teacher_follows_the_update_rule():
    batch = toy_batch(6)
    model = tiny_lm(VOCAB, torch.float64)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    obj = SDPOObjective(model, pg("ema", ema_rate=0.25))
    perturb(model, 2)
    obj.on_optimizer_step()
    theta1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    perturb(model, 3)
    obj.on_optimizer_step()
    theta2 = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: 0.75 * (0.75 * theta0[n] + 0.25 * theta1[n]) + 0.25 * theta2[n] for n in theta0}
    state = obj.state_dict()["teacher"]
    assert state["updates"] == 2
    for n in theta0:
        assert torch.allclose(state["ema"][n], expected[n], atol=1e-12), n
    twin = tiny_lm(VOCAB, torch.float64)
    twin.load_state_dict(expected)
    assert torch.allclose(obj(batch).teacher_logprobs, ref_teacher_logprobs(twin, batch), atol=1e-10)

    # exact resume: a fresh objective on the same initial weights, loaded with the state, agrees
    model2 = tiny_lm(VOCAB, torch.float64)
    obj2 = SDPOObjective(model2, pg("ema", ema_rate=0.25))
    model2.load_state_dict(theta2)
    obj2.load_state_dict(obj.state_dict())
    assert torch.equal(obj2(batch).teacher_logprobs, obj(batch).teacher_logprobs)
    with pytest.raises(SdpoError, match="EMA"):
        obj2.load_state_dict({"teacher": {}})


@pytest.mark.parametrize("r", [0.0, 0.3, 1.0])
def test_trust_region_teacher_lerps_logits(r):
    batch = toy_batch(7)
    model = tiny_lm(VOCAB, torch.float64)
    obj = SDPOObjective(model, pg("trust_region", trust_region_r=r))
    teacher = TeacherConfig(TeacherKind.trust_region, trust_region_r=r)
    topk = SDPOObjective(model, TopKLossConfig(k=VOCAB, teacher=teacher))
    perturb(model, 4)
    initial = tiny_lm(VOCAB, torch.float64)
    mixed = (1 - r) * teacher_logits(initial, batch) + r * teacher_logits(model, batch)
    expected = reference_logprobs(
        mixed, batch.teacher_prompt_lens, batch.completion_ids, batch.completion_mask
    )
    assert torch.allclose(obj(batch).teacher_logprobs, expected, atol=1e-10)
    # a distribution loss sees the same mixed teacher
    assert torch.allclose(topk(batch).teacher_logprobs, expected, atol=1e-10)


def test_base_fingerprint_refuses_a_mismatched_resume():
    model = tiny_lm(VOCAB, torch.float64)
    state = SDPOObjective(model, pg("base")).state_dict()
    perturb(model, 5)
    with pytest.raises(SdpoError, match="initial"):
        SDPOObjective(model, pg("base")).load_state_dict(state)  # built after "loading a checkpoint"


def _lora_model(tiny_tokenizer, dropout: float = 0.0):
    from sdpo_exp.models import load_model

    from conftest import CACHE_DIR, model_cfg

    torch.manual_seed(0)
    cfg = model_cfg("tiny_random", **{"lora.enabled": True, "lora.r": 4, "lora.dropout": dropout})
    return load_model(cfg, CACHE_DIR, tiny_tokenizer)


def _batch_for(model, seed=0):
    return (
        toy_batch(seed) if model.config.vocab_size == VOCAB else _random_batch(model.config.vocab_size, seed)
    )


def _random_batch(vocab, seed):
    from test_sdpo_logprobs import random_batch

    b = random_batch(vocab, seed)
    # give the teacher a different context than the student
    b.teacher_input_ids = b.student_input_ids.clone()
    b.teacher_input_ids[:, 0] = (b.teacher_input_ids[:, 0] + 7) % vocab
    return b


def test_lora_base_and_ema_teachers_use_the_adapter_switch_without_copying_base_weights(tiny_tokenizer):
    model = _lora_model(tiny_tokenizer)
    batch = _batch_for(model)
    base_obj = SDPOObjective(model, pg("base"))
    ema_obj = SDPOObjective(model, pg("ema", ema_rate=0.5))
    assert base_obj.initial.peft is not None and base_obj.initial.snapshot is None  # no copy at all
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert ema_obj.teacher.snapshot.num_elements == trainable < total / 20  # adapter weights only
    assert all("lora_" in n for n in ema_obj.teacher.snapshot.names)
    with torch.no_grad():  # "training" moved the adapter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.3)
    live = ref_teacher_logprobs(model, batch)
    with model.disable_adapter():
        base = ref_teacher_logprobs(model, batch)
    assert not torch.allclose(live, base, atol=1e-3)
    assert torch.allclose(base_obj(batch).teacher_logprobs, base, atol=1e-5)
    # EMA with B still zero in the snapshot: the teacher equals the base model until a step
    assert torch.allclose(ema_obj(batch).teacher_logprobs, base, atol=1e-5)
    ema_obj.on_optimizer_step()
    with torch.no_grad():
        halfway = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(0.5)
        half = ref_teacher_logprobs(model, batch)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(halfway[n])
    assert torch.allclose(ema_obj(batch).teacher_logprobs, half, atol=1e-5)
    # adapters are active again after every teacher pass
    assert torch.allclose(ref_teacher_logprobs(model, batch), live, atol=0)


def test_teacher_runs_without_dropout_and_train_flags_are_restored(tiny_tokenizer):
    model = _lora_model(tiny_tokenizer, dropout=0.5)
    with torch.no_grad():  # a non-zero adapter, so that its dropout matters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.3)
    model.train()
    some = next(m for n, m in model.named_modules() if n.endswith("mlp"))
    some.eval()  # a submodule deliberately in eval mode stays so
    batch = _batch_for(model, 1)
    obj = SDPOObjective(model, pg("live"))
    a, b = obj(batch), obj(batch)
    assert torch.equal(a.teacher_logprobs, b.teacher_logprobs)  # deterministic teacher
    assert not torch.equal(a.student_logprobs, b.student_logprobs)  # the student pass keeps dropout
    assert model.training and not some.training


LOSS_OPTIONS = ["pg", "topk", "full_kl", "jsd", "sft"]


@pytest.mark.parametrize("loss", LOSS_OPTIONS)
def test_build_objective_from_the_composed_config(compose, loss):
    cfg = compose(f"loss={loss}", "loss.teacher.kind=ema", "loss.kl_to_ref_beta=0.01", "model=tiny_random")
    model = tiny_lm(VOCAB, torch.float64)
    obj = build_objective(cfg, model)
    out = obj(toy_batch(8))
    out.loss.backward()
    obj.on_optimizer_step()
    assert torch.isfinite(out.loss) and "ref_kl_k1_mean" in out.metrics
    assert obj.name == loss


@pytest.mark.parametrize(
    "override",
    [
        "loss.teacher.ema_rate=0",
        "loss.teacher.trust_region_r=1.5",
        "loss.chunk_size=0",
        "loss.kl_to_ref_beta=-1",
    ],
)
def test_out_of_range_options_are_config_errors(compose, override):
    cfg = compose("loss=pg", override)
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        build_objective(cfg, tiny_lm(VOCAB))


def test_loss_specific_range_checks(compose):
    for overrides in (
        ["loss=jsd", "loss.alpha=2"],
        ["loss=topk", "loss.k=0"],
        ["loss=pg", "loss.clip_advantages=0"],
    ):
        with pytest.raises(ConfigError):
            build_objective(compose(*overrides), tiny_lm(VOCAB))


def test_ema_of_a_bf16_model_is_averaged_in_float32():
    model = tiny_lm(VOCAB, torch.bfloat16)
    obj = SDPOObjective(model, pg("ema", ema_rate=0.05))
    theta0 = {n: p.detach().float() for n, p in model.named_parameters()}
    expected = dict(theta0)
    for step in range(5):
        perturb(model, 10 + step, scale=0.01)
        obj.on_optimizer_step()
        expected = {n: 0.95 * expected[n] + 0.05 * p.detach().float() for n, p in model.named_parameters()}
    state = obj.state_dict()["teacher"]["ema"]
    for n in theta0:
        assert state[n].dtype == torch.float32
        assert torch.allclose(state[n], expected[n], atol=1e-6), n
    # a bf16 average would not have moved at all: the updates are below bf16 resolution
    moved = max(float((state[n] - theta0[n]).abs().max()) for n in theta0)
    assert moved > 1e-4
    out = obj(toy_batch(9))
    assert torch.isfinite(out.loss)


def test_objective_through_a_ddp_wrapper_gives_the_same_gradients(monkeypatch):
    import socket

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        batch = toy_batch(10)
        plain = tiny_lm(VOCAB)
        SDPOObjective(plain, pg("ema"))(batch).loss.backward()
        wrapped = DistributedDataParallel(tiny_lm(VOCAB))
        obj = SDPOObjective(wrapped, pg("ema"))
        obj(batch).loss.backward()
        obj.on_optimizer_step()
        for (n, a), b in zip(plain.named_parameters(), wrapped.module.parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, atol=1e-6), n
    finally:
        dist.destroy_process_group()

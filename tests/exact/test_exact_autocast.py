"""Every loss's gradient under bf16 autocast equals plain autograd of the same computation under the
same autocast, with logits large enough (max |logit| >= 25) that a softmax taken from mismatched
logits would no longer sum to one: padded, packed (`trainer.packing`), with the shared-prefix
teacher pass (`loss.shared_prefix`), and with both (the defaults)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from exact_reference import flat_grads, large_logit_lm, reference_loss, unequal_batch

from sdpo_exp.config.schemas.loss import (
    FullKLLossConfig,
    JSDLossConfig,
    LengthNorm,
    PGLossConfig,
    SFTLossConfig,
    TeacherConfig,
    TeacherKind,
    TopKLossConfig,
)
from sdpo_exp.sdpo.objective import SDPOObjective

VOCAB = 257
LENGTHS = [1, 2, 9, 10]

CASES = {
    "pg": PGLossConfig(chunk_size=4),
    "pg_token_ignore2": PGLossConfig(chunk_size=4, length_norm=LengthNorm.token, ignore_first_k=2),
    "pg_kl_to_ref": PGLossConfig(chunk_size=4, kl_to_ref_beta=0.3),
    "sft": SFTLossConfig(chunk_size=4),
    "full_kl": FullKLLossConfig(chunk_size=4),
    "topk": TopKLossConfig(chunk_size=4, k=5),
    "jsd": JSDLossConfig(chunk_size=4, alpha=0.3),
    "jsd_topk": JSDLossConfig(chunk_size=4, alpha=0.9, top_k=7),
    "pg_ema": PGLossConfig(chunk_size=4, teacher=TeacherConfig(kind=TeacherKind.ema)),
    "full_kl_base": FullKLLossConfig(chunk_size=4, teacher=TeacherConfig(kind=TeacherKind.base)),
    "pg_trust_region": PGLossConfig(
        chunk_size=4, teacher=TeacherConfig(kind=TeacherKind.trust_region, trust_region_r=0.3)
    ),
}


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _perturb(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05 * p.abs().mean())


LAYOUTS = {
    "padded": (False, False),
    "packed": (True, False),
    "shared": (False, True),
    "packed_shared": (True, True),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_under_bf16_autocast_matches_autograd(case, layout):
    packing, shared = LAYOUTS[layout]
    cfg = dataclasses.replace(CASES[case], shared_prefix=shared)
    model = large_logit_lm(VOCAB, torch.float32, seed=1)
    _, batch = unequal_batch(VOCAB, LENGTHS, seed=2)
    objective = SDPOObjective(
        model, cfg, packing=packing
    )  # takes the initial weights (teacher, reference) now
    assert objective.packing is packing
    initial = copy.deepcopy(model)
    _perturb(model, 3)  # the current weights move away from the initial ones, as after training

    with torch.no_grad(), autocast():
        logits = model(input_ids=batch.student_input_ids).logits.float()
    assert float(logits.abs().max()) >= 25, "the test needs large logits"

    model.zero_grad()
    with autocast():
        out = objective(batch)
    out.loss.backward()  # outside autocast, as the trainer does
    got = flat_grads(model)

    model.zero_grad()
    with autocast():
        expected_loss = reference_loss(model, batch, cfg, initial)
    expected_loss.backward()
    expected = flat_grads(model)

    assert abs(float(out.loss) - float(expected_loss)) <= 1e-3 * max(1.0, abs(float(expected_loss)))
    scale = float(expected.abs().max())
    assert scale > 1e-3
    error = float((got - expected).abs().max()) / scale
    assert error < 5e-3, f"{case} {layout}: relative gradient error {error:.4f} under bf16 autocast"


def test_fused_head_backward_under_autocast_is_that_of_its_forward():
    """The head alone: hidden (n, H) and W; log p(target) under autocast, backward outside it."""
    from sdpo_exp.sdpo.fused_head import linear_token_logprobs

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 32, generator=g, requires_grad=True)
    weight = (torch.randn(501, 32, generator=g) * 6).requires_grad_()
    targets = torch.randint(0, 501, (37,), generator=g)
    upstream = torch.randn(37, generator=g)

    with autocast():
        out = linear_token_logprobs(hidden, weight, None, targets, chunk_size=8)
    (out * upstream).sum().backward()
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()

    hidden.grad, weight.grad = None, None
    with autocast():
        logits = torch.nn.functional.linear(hidden, weight).float()
    ref = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    assert float(logits.abs().max()) > 25
    assert torch.allclose(out, ref, atol=1e-4)
    (ref * upstream).sum().backward()
    for got, want in ((got_h, hidden.grad), (got_w, weight.grad)):
        error = float((got - want).abs().max() / want.abs().max())
        assert error < 5e-3, error

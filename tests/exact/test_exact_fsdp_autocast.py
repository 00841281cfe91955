"""FSDP2 under bf16 autocast (float32 shards computing in bf16, as the paper presets train): two
processes give the one-process step whose micro-batches are the ranks' rows, so that every forward
has a rank's shapes and rounding. Measured: equal to the last bit. The `data_swap` defect put back
moves the weights by 1.3e-3 of the largest. (Against a one-process step of all four rows at once the
bf16 gap is 1.3e-3 too, from the other padding width alone: that comparison cannot tell a defect.)"""

from __future__ import annotations

import pytest
from fsdp_cases import BF16_CASES, run_case
from test_exact_fsdp import _torchrun, weight_gap

ALL = [(shape, spec) for shape, specs in BF16_CASES.items() for spec in specs]


@pytest.fixture(scope="module")
def bf16_accelerator():
    from accelerate import Accelerator

    from conftest import reset_accelerate

    reset_accelerate()
    yield Accelerator(cpu=True, mixed_precision="bf16")
    reset_accelerate()


@pytest.fixture(scope="module")
def references(bf16_accelerator):
    return {case: run_case(*case, bf16_accelerator, split_like_ranks=True) for case in ALL}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return _torchrun(tmp_path_factory.mktemp("fsdp_bf16") / "results.pt", "--bf16")


@pytest.mark.parametrize("case", ALL, ids=[f"{s}:{c}" for s, c in ALL])
def test_fsdp_under_bf16_autocast_equals_one_process(case, sharded, references):
    result, reference = sharded[case], references[case]
    assert result["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    assert result["grad_norms"] == pytest.approx(reference["grad_norms"], rel=1e-5)
    assert weight_gap(result, reference) <= 1e-6


def test_a_defect_put_back_is_caught_under_bf16(tmp_path, references):
    results = _torchrun(tmp_path / "defect.pt", "--bf16", "--defect", "data_swap")
    assert all(weight_gap(result, references[case]) > 1e-4 for case, result in results.items())

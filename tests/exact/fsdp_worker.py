"""One process of the FSDP exactness test, started by torchrun (gloo on CPU): every case of
`fsdp_cases.CASES` under FSDP2 across the processes; rank 0 writes {(shape, spec): result} to the
file named on the command line (`--bf16`: the BF16_CASES under bf16 autocast). `--defect NAME` puts a known defect back (the test shows that the
comparison then fails): `data_swap` swaps a teacher's weights by `p.data = t`, `head_no_copy` keeps
a view of the gathered LM-head weight for a teacher with other weights instead of a copy.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from accelerate import Accelerator
from fsdp_cases import BF16_CASES, CASES, run_case

from sdpo_exp.sdpo import teacher as teacher_module
from sdpo_exp.sdpo.logprobs import LogitHead
from sdpo_exp.training.strategy import FullySharded


@contextlib.contextmanager
def _data_swap(snapshot):
    live = [p.data for p in snapshot.params]
    for p, t in zip(snapshot.params, snapshot.tensors, strict=True):
        p.data = t
    try:
        yield
    finally:
        for p, data in zip(snapshot.params, live, strict=True):
            p.data = data


def put_back(defect: str) -> None:
    if defect == "data_swap":
        teacher_module.ParamSnapshot.swapped_in = _data_swap
    elif defect == "head_no_copy":
        frozen = LogitHead.frozen
        LogitHead.frozen = lambda self, copy=False: frozen(self, False)
    elif defect:
        raise SystemExit(f"unknown defect {defect}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--defect", default="")
    parser.add_argument("--only", nargs="*", default=None, help="shape:spec cases to run")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the BF16_CASES)")
    args = parser.parse_args()
    put_back(args.defect)
    acc = Accelerator(cpu=True, mixed_precision="bf16" if args.bf16 else "no")
    table = BF16_CASES if args.bf16 else CASES
    cases = [(shape, spec) for shape, specs in table.items() for spec in specs]
    if args.only:
        cases = [c for c in cases if f"{c[0]}:{c[1]}" in args.only]
    results = {}
    for shape, spec in cases:
        results[(shape, spec)] = run_case(shape, spec, acc, FullySharded(acc))
    if acc.is_main_process:
        torch.save(results, args.out)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()

"""One process of the two-process accumulation test, started by torchrun (gloo on CPU).

Each process takes two of the step's four sequences, in a split unlike the micro-batch split of the
single-process runs (rank 0: rows 0 and 3, rank 1: rows 1 and 2), and accumulates the gradient of one
optimiser step through the learner's `accumulate_gradients` on a DDP-wrapped model, padded and
packed. Rank 0 writes
{case: (step loss, gradient)} to the file named on the command line.
"""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from exact_reference import accumulation_cases, accumulation_model, accumulation_rows

from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.objective import SDPOObjective
from sdpo_exp.training.update import accumulate_gradients

SPLIT = {0: [0, 3], 1: [1, 2]}


def main(out_path: str) -> None:
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2
    rows = accumulation_rows()
    mine = collate_encoded([rows[i] for i in SPLIT[acc.process_index]], pad_id=0)
    results = {}
    for name, cfg in accumulation_cases().items():
        for packing in (False, True):
            model = acc.prepare(accumulation_model())
            objective = SDPOObjective(model, cfg, packing=packing)
            sums = accumulate_gradients(acc, model, objective, [mine], [True])
            metrics = sums.reduce(acc)
            grads = torch.cat([p.grad.flatten() for p in acc.unwrap_model(model).parameters()])
            results[f"{name}|packed" if packing else name] = (metrics["loss"], grads)
    everyone = [None, None]
    torch.distributed.all_gather_object(everyone, results)
    if acc.is_main_process:
        for name in results:  # DDP leaves the same averaged gradient on every process
            assert torch.equal(everyone[0][name][1], everyone[1][name][1]), name
        torch.save(results, out_path)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])

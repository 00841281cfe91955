"""The SDPO core: hindsight contexts, aligned batches, chunked log-probs, losses and teachers.

Modules: `hindsight` (teacher contexts), `truncation` (history truncation), `batching`
(`BatchBuilder`, `SDPOBatch`), `logprobs` (memory-efficient per-token log-probs), `divergences`
(per-position divergences over logits), `fused_head` and `fused_topk` (chunked LM-head reductions
with analytic backwards), `losses` (the loss family and its metrics), `teacher` (live, EMA, base and
trust-region teachers), `prefix` (the shared-prefix teacher pass), `sharding` (what the core must
do on FSDP2-sharded weights), `objective` (`SDPOObjective`, `build_objective`).
"""

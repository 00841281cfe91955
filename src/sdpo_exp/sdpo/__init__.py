"""The SDPO core: hindsight contexts, aligned batches, chunked log-probs, losses and teachers.

Modules: `hindsight` (teacher contexts), `truncation` (history truncation), `batching`
(`BatchBuilder`, `SDPOBatch`), `logprobs` (memory-efficient per-token log-probs), `divergences`
(per-position divergences over logits), `losses` (the loss family and its metrics), `teacher`
(live, EMA, base and trust-region teachers), `objective` (`SDPOObjective`, `build_objective`).
"""

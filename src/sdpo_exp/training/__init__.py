"""The offline training loop and its parts: batch geometry and data order, optimiser and schedule,
atomic checkpoints with exact resume, evaluation, progress, preemption, multi-process launch."""

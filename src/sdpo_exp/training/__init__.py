"""The learner and its parts: one exact optimiser step (`learner`, `update`), batch geometry and data
order, optimiser and schedule, atomic checkpoints with exact resume, evaluation, progress,
preemption, multi-process launch, the distribution strategy (`strategy`: DDP or FSDP2; `lora_merge`
for a sharded LoRA run's final model). Tasks (`sdpo_exp.tasks`) drive it."""

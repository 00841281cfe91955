"""`task=online`: SDPO from a simulated user's follow-ups (paper, Section 4.2).

For each batch of training prompts: sample a reply y from the current policy, let the simulated user
(playing the profile in force) write the next message o, and update the policy at once on the
interactions (x, y, o) through the learner. Every `task.eval_every` interactions, at the start, at
each profile switch and at the end, the policy's greedy replies to the held-out prompts are judged
against the base model's (and, after a switch, against the policy's replies when that profile
started), by a judge playing each profile of the schedule.

Evaluation and checkpoints happen after a batch's update, in that order, so that a run resumed from
a checkpoint samples, simulates and trains exactly as the uninterrupted run did next.

`task.overlap_simulation=true` (off by default) fetches the user's follow-ups to batch t in a thread
while the policy samples batch t+1, so batch t+1 comes from the weights before batch t's update: one
batch of staleness, logged at the start, counted (`stale_batches`) and recorded with every interaction
(`policy_version`: the optimiser steps of the weights that sampled it). A checkpoint then also holds
the batch already sampled and not yet trained on, so that a resumed run goes on exactly as the
uninterrupted overlapped run did. Prompts, the sampling RNG stream and the first batch are those of the
sequential run; from the second batch on the replies differ, since older weights sample them.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.config.schemas.trainer import Strategy
from sdpo_exp.data.prompt_files import Prompt, read_prompt_sets
from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.tracker import WinRateTracker
from sdpo_exp.generation.hf import Sample
from sdpo_exp.interaction import Interaction
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.tasks.offline import effective_geometry
from sdpo_exp.tasks.online_files import OnlineFiles
from sdpo_exp.training.data_plan import DataPlan
from sdpo_exp.training.distributed import any_process, gather_objects, make_accelerator, shared_run_dir
from sdpo_exp.training.geometry import batch_geometry
from sdpo_exp.training.learner import Learner
from sdpo_exp.training.preemption import PreemptionWatcher
from sdpo_exp.training.progress import Progress, progress_line
from sdpo_exp.training.strategy import strategy_of
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.roles import UserRoles
from sdpo_exp.users.schedule import make_schedule

log = logging.getLogger(__name__)

# What this task's run depends on besides the learner's settings: a resumed run must have the same.
ONLINE_KEYS = ("dataset.train_path", "dataset.max_train_prompts", "user_profile", "simulator", "generation",
               "task.num_interactions", "task.updates_per_batch", "task.schedule", "task.flip_after",
               "task.profiles", "task.switch_every")  # fmt: skip


@dataclass
class OnlineState:
    batches: int = 0  # batches of prompts done (sampled, simulated, trained on)
    steps: int = 0  # optimiser steps
    interactions: int = 0  # interactions trained on
    no_followup: int = 0  # replies the simulator gave no follow-up to (skipped)
    train_seconds: float = 0.0  # sampling, simulating and updating (evaluation not counted)
    # where the time goes (summed over the run, resumes included)
    generate_seconds: float = 0.0  # the policy's replies
    simulate_seconds: float = 0.0  # the simulated user's follow-ups
    update_seconds: float = 0.0  # the learner's steps (teacher and student passes, backward, optimiser)
    sync_seconds: float = 0.0  # sleeping/waking a vLLM engine and pushing the new weights to it
    eval_seconds: float = 0.0  # held-out replies and the judge
    # the part of simulate_seconds the loop waited for (all of it without task.overlap_simulation)
    simulate_wait_seconds: float = 0.0
    # batches sampled from weights older than the sequential loop's (task.overlap_simulation: by one batch)
    stale_batches: int = 0


@dataclass
class Drawn:
    """A batch's sampled replies, not yet answered by the user: `version` is the number of optimiser
    steps of the weights that sampled them."""

    batch: int
    version: int
    samples: list[Sample]

    def to_state(self) -> dict[str, Any]:
        return {"batch": self.batch, "version": self.version, "samples": [list(s) for s in self.samples]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Drawn:
        return cls(int(state["batch"]), int(state["version"]), [Sample(*s) for s in state["samples"]])


LOCAL_USERS = ("hf", "vllm")  # simulators that share the policy's device (and torch's RNG)


class OnlineRun:
    def __init__(self, cfg: DictConfig, ctx: RunContext) -> None:
        from sdpo_exp.generation import make_generator
        from sdpo_exp.models import load_tokenizer
        from sdpo_exp.models.loader import pretrained_dir
        from sdpo_exp.sdpo.batching import BatchBuilder

        self.cfg, self.ctx, task = cfg, ctx, cfg.task
        self.acc = make_accelerator(cfg.trainer)
        if not self.acc.is_main_process:
            logging.getLogger("sdpo_exp").setLevel(logging.WARNING)
        self.run_dir = shared_run_dir(self.acc, Path(ctx.run_dir))
        self.train, self.held = read_prompt_sets(cfg.dataset, int(task.eval.num_eval_prompts))
        builder = BatchBuilder.from_config(cfg, load_tokenizer(cfg.model, cfg.paths.cache_dir))
        geometry = batch_geometry(cfg.trainer, self.acc.num_processes)
        self.batch_size = geometry.global_batch
        if strategy_of(cfg.trainer) == Strategy.fsdp and self.acc.num_processes > 1:
            raise ConfigError(
                "task=online with trainer.strategy=fsdp on several processes is not supported: each process "
                "samples its own completions from the policy, and a sharded policy would need every process "
                "to run the same number of forward passes. Use trainer.strategy=ddp (LoRA fits one GPU per "
                "replica), or train offline on logged interactions with FSDP"
            )
        if int(task.num_interactions) < 1 or int(task.updates_per_batch) < 1:
            raise ConfigError("task.num_interactions and task.updates_per_batch must be >= 1")
        self.overlap = bool(task.get("overlap_simulation", False))
        user_backend = str(getattr(cfg.simulator.backend, "value", cfg.simulator.backend))
        if self.overlap and user_backend in LOCAL_USERS:
            raise ConfigError(
                f"task.overlap_simulation=true needs a simulator that does not run on this machine's model "
                f"backends (anthropic, rule_based or a control); simulator.backend={user_backend} would "
                "compete with the policy's sampling for the device and draw from the same random stream"
            )
        self.num_batches = math.ceil(int(task.num_interactions) / self.batch_size)
        self.plan = DataPlan(len(self.train), geometry, int(cfg.seed))
        self.schedule = make_schedule(task, UserProfile.from_config(cfg.user_profile), self.batch_size)
        total_steps = self.num_batches * int(task.updates_per_batch)
        # a checkpoint of an overlapped run holds a sampled batch: it resumes only with the overlap on
        keys = (*ONLINE_KEYS, "task.overlap_simulation") if self.overlap else ONLINE_KEYS
        self.learner = Learner(cfg, self.acc, builder, total_steps, self.run_dir, keys, geometry)
        backend = str(getattr(cfg.generation.backend, "value", cfg.generation.backend))
        model_dir = pretrained_dir(cfg.model, cfg.paths.cache_dir) if backend == "vllm" else None
        self.policy = make_generator(
            backend, self.acc.unwrap_model(self.learner.model), builder.tokenizer,
            dict(cfg.model.chat_template_kwargs or {}), int(cfg.generation.batch_size), model_dir,
            OmegaConf.to_container(cfg.generation.vllm), self.acc.autocast,
            # the sampler's log-probs: for loss.is_clip, and to log how far the sampler is from the learner
            record_logprobs=backend == "vllm" or OmegaConf.select(cfg, "loss.is_clip") is not None,
        )  # fmt: skip
        self.users = UserRoles(cfg, self.schedule.profiles, self.acc.device, judges=self.acc.is_main_process)
        self.judging = WinRateTracker(
            cfg, self.held, self.schedule, self.users.judges, self.policy, self.run_dir
        )
        self.files = OnlineFiles(self.run_dir, self.acc.is_main_process)
        self.state = OnlineState()
        self.drawn: Drawn | None = None  # the next batch, sampled ahead (task.overlap_simulation)
        # runs with weight zero where a process has nothing to train on in a micro-batch
        first = self.train[0]
        self.filler = Interaction(first.messages(), "OK", "OK", id="filler")
        if ctx.is_main_process:
            ctx.tracker.update_config(effective_geometry(geometry))
        log.info(
            "%d interactions in %d batches of %d (%s); %d optimiser steps; profile schedule: %s",
            self.num_batches * self.batch_size, self.num_batches, self.batch_size, geometry.describe(),
            total_steps, self.schedule.describe(),
        )  # fmt: skip
        if self.overlap:
            log.info(
                "task.overlap_simulation: the user's follow-ups to batch t are fetched while batch t+1 is "
                "sampled, from the weights before batch t's update (at most one batch stale; counted as "
                "stale_batches, and each interaction records its policy_version)"
            )

    # -- the algorithm -----------------------------------------------------------------------------
    def draw(self, batch: int) -> Drawn:
        """The policy's sampled replies to this process's prompts of `batch`."""
        prompts = self._prompts(batch)
        t0 = time.perf_counter()
        samples = self.policy.generate([p.messages() for p in prompts], self.cfg.generation)
        self.state.generate_seconds += time.perf_counter() - t0
        return Drawn(batch, self.state.steps, list(samples))

    def ask_user(self, drawn: Drawn) -> tuple[list[str | None], float]:
        """The simulated user's follow-ups to the drawn replies, and the seconds they took (no shared
        state is written: this runs in a thread with task.overlap_simulation)."""
        profile = self.schedule.profile_at(drawn.batch * self.batch_size)
        prompts = self._prompts(drawn.batch)
        t0 = time.perf_counter()
        followups = self.users.simulator(profile).followups(
            [p.prompt for p in prompts], [s.text for s in drawn.samples]
        )
        return followups, time.perf_counter() - t0

    def interactions_for(self, drawn: Drawn, followups: list[str | None]) -> list[list[Interaction]]:
        """This process's micro-batches of fresh interactions for the drawn batch: the sampled replies,
        each with the simulated user's follow-up (written to interactions.jsonl)."""
        batch = drawn.batch
        profile = self.schedule.profile_at(batch * self.batch_size)
        slots = self.plan.micro_batches(batch, self.acc.process_index)
        prompts = self._prompts(batch)
        made, records, k = [], [], 0
        for slot in slots:
            micro = []
            for _ in slot:
                prompt, sample, followup = prompts[k], drawn.samples[k], followups[k]
                k += 1
                record = {"batch": batch, "profile": profile.name, "prompt_id": prompt.id,
                          "policy_version": drawn.version}  # fmt: skip
                if not followup or not followup.strip():
                    self.state.no_followup += 1
                    records.append({**record, "skipped": "no_followup", "completion": sample.text})
                    continue
                interaction = Interaction(
                    context=prompt.messages(), completion=sample.text, followup=followup,
                    id=f"b{batch}-{prompt.id}", completion_ids=sample.ids, completion_ended=sample.ended,
                    completion_logprobs=sample.logprobs,
                )  # fmt: skip
                micro.append(interaction)
                records.append({**record, **interaction.to_record()})
            made.append(micro)
        self.files.add_interactions(gather_objects(self.acc, records))
        return made

    def _prompts(self, batch: int) -> list[Prompt]:
        slots = self.plan.micro_batches(batch, self.acc.process_index)
        return [self.train[i] for slot in slots for i in slot]

    def next_interactions(self, pool: ThreadPoolExecutor | None) -> list[list[Interaction]]:
        """The interactions of batch `state.batches`. Sequentially: sample, then ask the user. With
        `pool` (task.overlap_simulation): ask the user about this batch in the pool while the next batch
        is sampled (kept in `self.drawn` for the next call and for checkpoints)."""
        batch = self.state.batches
        drawn = self.drawn if self.drawn is not None else self.draw(batch)
        self.drawn = None
        if drawn.batch != batch:
            raise RuntimeError(f"the batch sampled ahead is {drawn.batch}, the loop is at {batch}")
        if pool is None:
            followups, seconds = self.ask_user(drawn)
            waited = seconds
        else:
            future = pool.submit(self.ask_user, drawn)
            if batch + 1 < self.num_batches:
                self.drawn = self.draw(batch + 1)
            t0 = time.perf_counter()
            followups, seconds = future.result()
            waited = time.perf_counter() - t0
        self.state.simulate_seconds += seconds
        self.state.simulate_wait_seconds += waited
        if drawn.version != self.state.steps:
            self.state.stale_batches += 1
        return self.interactions_for(drawn, followups)

    def train_on(self, micro_batches: list[list[Interaction]]) -> dict[str, float]:
        """The learner's updates on the batch; a vLLM engine in sleep mode frees its GPU memory
        meanwhile, then receives the new weights."""
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        getattr(self.policy, "sleep", lambda: None)()
        t1 = time.perf_counter()
        for _ in range(int(self.cfg.task.updates_per_batch)):
            metrics = self.learner.step(micro_batches, self.filler)
            self.state.steps += 1
        t2 = time.perf_counter()
        getattr(self.policy, "wake_up", lambda: None)()
        self.policy.sync_weights(self.acc.unwrap_model(self.learner.model))
        self.state.update_seconds += t2 - t1
        self.state.sync_seconds += (t1 - t0) + (time.perf_counter() - t2)
        return metrics

    def evaluate(self) -> None:
        t0 = time.perf_counter()
        rows = self.judging.evaluate(self.state.batches * self.batch_size, self.state.batches, self.state.steps,
                                     self.acc, untrained=self.state.steps == 0)  # fmt: skip
        self.state.eval_seconds += time.perf_counter() - t0
        if self.acc.is_main_process:
            self.files.add_winrates(rows)
            self.ctx.log(
                {f"eval/{r['profile']}/vs_{r['baseline']}/win_rate": r["win_rate"] for r in rows},
                self.state.steps,
            )

    def evaluate_oracle(self) -> None:
        """The in-context oracle before any update: the same model told the profile, judged against the
        base model on the same held-out prompts (a reference for what the policy could reach)."""
        if self.acc.is_main_process:
            path = self.run_dir / "eval_replies" / "outcomes_oracle.jsonl"
            self.files.set_oracle(self.judging.evaluate_oracle(str(self.cfg.task.oracle_system_prompt), path))
        self.acc.wait_for_everyone()

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._resume()
        self._first_batch, self._seconds_before = self.state.batches, self.state.train_seconds
        task, tcfg = self.cfg.task, self.cfg.trainer
        t0 = time.perf_counter()
        self.judging.prepare_baseline(self.state.batches == 0, self.acc)
        if bool(task.oracle) and self.state.batches == 0:
            self.evaluate_oracle()
        self.state.eval_seconds += time.perf_counter() - t0
        save_every = int(tcfg.save_every)
        eval_every = int(task.eval_every)
        show = bool(task.progress_bar) and self.acc.is_main_process
        progress = Progress(self.num_batches, self.state.batches, show, desc="online", unit="batch")
        last_saved = self.state.batches if self.state.batches else -1
        pool = ThreadPoolExecutor(1, thread_name_prefix="user") if self.overlap else None
        try:
            if self.state.batches == 0 and bool(task.eval_at_start):
                self.evaluate()
            with PreemptionWatcher(bool(task.checkpoint_on_signal)) as watcher:
                while self.state.batches < self.num_batches:
                    t0 = time.perf_counter()
                    micro_batches = self.next_interactions(pool)
                    t1 = time.perf_counter()
                    metrics = self.train_on(micro_batches)
                    metrics["sample_seconds"], metrics["update_seconds"] = t1 - t0, time.perf_counter() - t1
                    self.state.batches += 1
                    self.state.interactions += int(metrics.get("num_interactions", 0))
                    self.state.train_seconds += time.perf_counter() - t0
                    self._log(metrics, progress)
                    seen = self.state.batches * self.batch_size
                    due = (eval_every > 0 and seen % eval_every < self.batch_size and seen >= eval_every) or (
                        seen in self.schedule.switch_points
                    )
                    if due and self.state.batches < self.num_batches:
                        self.evaluate()
                    stop = any_process(self.acc, watcher.triggered)
                    steps_crossed = save_every > 0 and (self.state.steps // save_every) > (
                        (self.state.steps - int(task.updates_per_batch)) // save_every
                    )
                    if steps_crossed or stop:
                        self._save()
                        last_saved = self.state.batches
                    if stop:
                        watcher.stop()
            if bool(task.eval_at_end):
                self.evaluate()
            if save_every > 0 and last_saved != self.state.batches:
                self._save()
        finally:
            progress.close()
            if pool is not None:
                pool.shutdown(wait=True)
        if bool(tcfg.save_final):
            self.learner.save_final(self.run_dir / "final")
        return self._finish()

    # -- bookkeeping -------------------------------------------------------------------------------
    def _resume(self) -> None:
        saved = self.learner.resume(str(self.cfg.resume), self.run_dir)
        if saved is not None:
            self.state = OnlineState(**saved["online"])
            pending = saved.get("pending")
            self.drawn = Drawn.from_state(pending) if pending else None
            if self.acc.is_main_process:  # the saved counters are the sum over processes
                self.users.counted_before = dict(saved.get("simulator", {}))
            self.policy.sync_weights(self.acc.unwrap_model(self.learner.model))
            log.info(
                "Resumed from %s after %d of %d batches", saved["path"], self.state.batches, self.num_batches
            )
        if self.acc.is_main_process:
            self.files.truncate(self.state.batches, self.state.steps, fresh=saved is None)

    def _save(self) -> None:
        state: dict[str, Any] = {"online": asdict(self.state), "simulator": self._simulator_metrics()}
        if self.drawn is not None:  # sampled ahead (task.overlap_simulation): the RNG has moved past it
            state["pending"] = self.drawn.to_state()
        self.learner.save(self.state.steps, state)

    def _simulator_metrics(self) -> dict[str, float]:
        """The simulators' counters summed over processes."""
        total: dict[str, float] = {}
        for part in gather_objects(self.acc, self.users.simulator_metrics()):
            for key, value in part.items():
                total[key] = total.get(key, 0) + value
        return total

    def _log(self, metrics: dict[str, float], progress: Progress) -> None:
        for key in ("num_input_tokens", "num_completion_tokens"):
            metrics.pop(key, None)
        row = {f"train/{k}": v for k, v in metrics.items()}
        row.update(
            {
                "online/interactions_offered": self.state.batches * self.batch_size,
                "online/interactions_trained": self.state.interactions,
                "online/no_followup": self.state.no_followup,
                "online/profile": self.schedule.profile_at((self.state.batches - 1) * self.batch_size).name,
            }
        )
        row.update({f"simulator/{k}": v for k, v in self._simulator_metrics().items()})
        progress.update(row)
        self.ctx.log({k: v for k, v in row.items() if not isinstance(v, str)}, self.state.steps)
        if (
            self.state.batches % max(int(self.cfg.trainer.log_every), 1) == 0
            or self.state.batches == self.num_batches
        ):
            spent = self.state.train_seconds - self._seconds_before
            per_batch = spent / max(self.state.batches - self._first_batch, 1)
            log.info("%s", progress_line(self.state.batches, self.num_batches, "batch", row, per_batch))

    def _finish(self) -> dict[str, Any]:
        if self.acc.is_main_process:
            self.files.write_outputs(
                self.cfg, self.schedule, self.state.batches * self.batch_size, self.batch_size
            )
        rows = self.files.winrates()
        final = {}
        end = max((r["interactions"] for r in rows), default=0)
        for r in rows:
            if r["interactions"] == end and r["win_rate"] is not None:
                final[f"final/{r['profile']}/vs_{r['baseline']}/win_rate"] = float(r["win_rate"])
        for r in self.files.oracle():
            if r["win_rate"] is not None:
                final[f"oracle/{r['profile']}/win_rate"] = float(r["win_rate"])
        out = {**asdict(self.state), **final}  # counts stay integers
        out["interactions_offered"] = self.state.batches * self.batch_size
        spent = self.state.train_seconds + self.state.eval_seconds
        out["interactions_per_minute"] = 60.0 * self.state.interactions / spent if spent > 0 else 0.0
        out.update({f"simulator/{k}": v for k, v in self._simulator_metrics().items()})
        out.update({f"judge/{k}": v for k, v in self.users.judge_metrics().items()})
        log.info(
            "Outputs: win-rate plot %s; report %s; interactions %s",
            self.run_dir / "winrate.png", self.run_dir / "report.md", self.run_dir / "interactions.jsonl",
        )  # fmt: skip
        return out


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    return OnlineRun(cfg, ctx).run()

"""`task=online`, with or without controls.

Without `task.controls` this is one online run (`tasks.online`). With controls, the question is
whether the policy learned from what the user said, or only drifted under updates that a judge happens
to like. So the same run is trained once per arm, from the same start with the same seed, prompts,
sampling and updates, and only the simulated user differs:

1. `user`: the profile's user (`simulator`); the in-context oracle is evaluated at its start
   (`task.oracle`), and the base model's greedy replies are computed once and shared;
2. each control (`task.controls`, e.g. `unrelated`): a user whose follow-ups carry no information
   about the reply;
3. at every evaluation, the arms' outcomes against the base model are paired prompt by prompt.

Arms run one after the other in `arms/<name>/` (each a complete online run directory); an arm that
finished in an earlier attempt is not run again, an unfinished one resumes from its checkpoints.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, open_dict

from sdpo_exp.config.check import compose_option
from sdpo_exp.config.paths import CONF_DIR
from sdpo_exp.data.jsonl import AtomicJsonlWriter, write_json
from sdpo_exp.evaluation.arms import compare_arms
from sdpo_exp.evaluation.arms_report import beat, criterion_met, plot_arms, write_arms_report
from sdpo_exp.seeding import seed_everything
from sdpo_exp.tasks import task_config
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.tasks.online import OnlineRun
from sdpo_exp.tasks.online_files import OnlineFiles, read_jsonl
from sdpo_exp.tracking import PartTracker

log = logging.getLogger(__name__)

MAIN = "user"  # the arm with the profile's user
DONE = "arm.json"  # an arm's final metrics, written when it has finished


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    controls = [str(c) for c in cfg.task.get("controls") or []]
    if not controls:
        return OnlineRun(cfg, ctx).run()
    return ControlledRun(cfg, ctx, controls).run()


class ControlledRun:
    def __init__(self, cfg: DictConfig, ctx: RunContext, controls: list[str]) -> None:
        self.cfg, self.ctx, self.controls = cfg, ctx, controls
        self.run_dir = Path(ctx.run_dir)
        self.arms = [MAIN, *controls]

    def arm_dir(self, arm: str) -> Path:
        return self.run_dir / "arms" / arm

    # -- the comparison ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        results, offset = {}, 0
        for k, arm in enumerate(self.arms):
            log.info("Arm %d of %d: %s (simulator %s)", k + 1, len(self.arms), arm, self._simulator(arm))
            results[arm] = self.train(arm, offset)
            offset += int(results[arm].get("steps", 0)) + 1  # the arms follow one another in wandb
        comparison = []
        if self.ctx.is_main_process:  # the arms' files are the main process's
            comparison = compare_arms(
                self.arm_dir(MAIN), {c: self.arm_dir(c) for c in self.controls},
                bootstrap_samples=int(self.cfg.task.eval.bootstrap_samples), seed=int(self.cfg.seed),
            )  # fmt: skip
            self._write_outputs(comparison)
        metrics = self._metrics(results, comparison)
        metrics["seconds"] = time.perf_counter() - t0
        return metrics

    def train(self, arm: str, step_offset: int) -> dict[str, Any]:
        """One arm, trained (or resumed) in its own directory; its final metrics."""
        where = self.arm_dir(arm)
        done = where / DONE
        if done.is_file() and str(self.cfg.resume) != "never":
            log.info("Arm %s finished in an earlier attempt (%s): not run again", arm, done)
            return json.loads(done.read_text())
        where.mkdir(parents=True, exist_ok=True)
        arm_cfg = self.arm_config(arm)
        self._share_base(where)
        if self.ctx.is_main_process:
            plain, _ = task_config(arm_cfg)
            (where / "config.yaml").write_text(
                f"# The resolved config of arm '{arm}' of {self.run_dir}\n"
                + yaml.safe_dump(plain, sort_keys=False)
            )
        generator = seed_everything(int(self.cfg.seed))  # every arm starts from the same random state
        tracker = PartTracker(self.ctx.tracker, where, arm, step_offset)
        try:
            arm_ctx = RunContext(where, tracker, generator, self.ctx.is_main_process)
            metrics = OnlineRun(arm_cfg, arm_ctx).run()
            tracker.log_summary(metrics)
        finally:
            tracker.close()
            gc.collect()
        if self.ctx.is_main_process:
            write_json(done, metrics)
            shared = self.run_dir / "eval_replies" / "base.jsonl"
            if not shared.is_file() and (where / "eval_replies" / "base.jsonl").is_file():
                shared.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(where / "eval_replies" / "base.jsonl", shared)
        return metrics

    def arm_config(self, arm: str) -> DictConfig:
        """This run's config with the arm's simulator, no controls of its own, and the oracle (when
        asked for) in the first arm only."""
        arm_cfg = copy.deepcopy(self.cfg)
        with open_dict(arm_cfg):
            arm_cfg.task.controls = []
            arm_cfg.task.oracle = bool(self.cfg.task.oracle) and arm == MAIN
            if arm != MAIN:
                arm_cfg.simulator = compose_option(CONF_DIR, "simulator", arm)
        return arm_cfg

    # -- bookkeeping -------------------------------------------------------------------------------
    def _simulator(self, arm: str) -> str:
        return str(self.cfg.simulator.name) if arm == MAIN else arm

    def _share_base(self, where: Path) -> None:
        """The base model's greedy replies, computed by the first arm, are every arm's."""
        shared = self.run_dir / "eval_replies" / "base.jsonl"
        mine = where / "eval_replies" / "base.jsonl"
        if self.ctx.is_main_process and shared.is_file() and not mine.is_file():
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared, mine)

    def _metrics(
        self, results: dict[str, dict[str, Any]], comparison: list[dict[str, Any]]
    ) -> dict[str, Any]:
        out: dict[str, Any] = dict(results[MAIN])  # the run's own metrics, as without controls
        for arm in self.controls:
            out.update({f"{arm}/{k}": v for k, v in results[arm].items() if k.startswith("final/")})
        end = max((r["interactions"] for r in comparison), default=None)
        for r in comparison:
            if r["interactions"] != end:
                continue
            prefix = f"compare/{r['control']}/{r['profile']}"
            for key in ("diff", "bootstrap_se", "p_sign", "p_bootstrap", "favour_a", "favour_b"):
                if r[key] is not None:
                    out[f"{prefix}/{key}"] = r[key]
            out[f"{prefix}/beat"] = int(beat(r))
            out[f"{prefix}/criterion_met"] = int(criterion_met(r))
        return out

    def _write_outputs(self, comparison: list[dict[str, Any]]) -> None:
        arm_rows = {arm: read_jsonl(self.arm_dir(arm) / "winrate.jsonl") for arm in self.arms}
        oracle = read_jsonl(self.arm_dir(MAIN) / "oracle.jsonl")
        with AtomicJsonlWriter(self.run_dir / "winrate.jsonl") as out:
            for arm, rows in arm_rows.items():
                for row in rows:
                    out.write({"arm": arm, **row})
        if oracle:
            OnlineFiles(self.run_dir, main=True).set_oracle(oracle)
        write_json(self.run_dir / "comparison.json", comparison)
        cfg = self.cfg
        prompts = max((r["prompts"] for r in comparison), default=int(cfg.task.eval.num_eval_prompts))
        backend = str(getattr(cfg.judge.backend, "value", cfg.judge.backend))
        judge = str(cfg.judge.name) + ("" if backend == str(cfg.judge.name) else f" ({backend})")
        title = f"{cfg.model.name}, {cfg.user_profile.name}, judge {cfg.judge.name}, seed {cfg.seed}, {prompts} held-out prompts"
        plot_arms(arm_rows, oracle, comparison, self.run_dir / "winrate.png", title)
        settings = {
            "model": cfg.model.name,
            "profile": cfg.user_profile.name,
            "arms (simulator)": ", ".join(f"{a} ({self._simulator(a)})" for a in self.arms),
            "judge": judge,
            "interactions per arm": cfg.task.num_interactions,
            "held-out prompts": prompts,
            "loss": cfg.loss.name,
            "learning rate": cfg.trainer.lr,
            "sampling temperature": cfg.generation.temperature,
            "seed": cfg.seed,
        }
        write_arms_report(self.run_dir / "report.md", settings, comparison, judge, oracle, self.arms)
        log.info("Outputs: comparison report %s; win-rate plot %s; arms in %s", self.run_dir / "report.md",
                 self.run_dir / "winrate.png", self.run_dir / "arms")  # fmt: skip

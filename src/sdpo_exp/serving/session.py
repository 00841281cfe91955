"""One serving session: the policy, the journals, the turn book and (learn=online) the learner.

Files in the run directory:
- `conversations.jsonl`: one line per answered request (the messages, the reply with its token ids,
  the sampling settings, which earlier reply it answers), appended and synced before the response;
- `interactions.jsonl`: one interaction (x, y, o) per reply the user answered, in the project's
  schema (`Interaction.to_record`, the served `completion_ids` included), appended and synced as soon
  as the answer arrives, before the new reply is generated; `task=offline dataset=interactions
  dataset.train_path=<run dir>/interactions.jsonl` trains on it.
A restart in the same run directory reads both back: earlier replies can still be answered, none is
logged twice, and with learn=online the learner resumes from its newest checkpoint and queues the
interactions logged after it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.errors import ConfigError
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.hindsight import SkipInteraction
from sdpo_exp.serving.journal import Journal
from sdpo_exp.serving.learning import BackgroundLearner, LearnState
from sdpo_exp.serving.policy import ServedPolicy
from sdpo_exp.serving.protocol import ApiError, ChatRequest, completion_body, parse_chat_request
from sdpo_exp.serving.signal import interaction_signal
from sdpo_exp.serving.turns import ServedTurn, TurnBook
from sdpo_exp.training.resume import truncate_metrics

log = logging.getLogger(__name__)

# What a resumed learn=online run must share with the checkpoint besides the learner's settings.
SERVE_KEYS = ("task.update_every",)
_INTERACTION_FIELDS = ("context", "completion", "followup", "id", "conversation_id", "turn", "completion_ids",
                       "completion_logprobs", "meta")  # fmt: skip


def interaction_from_record(record: dict[str, Any]) -> Interaction:
    """An interactions.jsonl line back as the Interaction that was logged."""
    return Interaction(**{k: record[k] for k in _INTERACTION_FIELDS if k in record},
                       completion_ended=bool(record.get("completion_ended", True)))  # fmt: skip


def _value(node: Any) -> str:
    return str(getattr(node, "value", node))


class ServeSession:
    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        on_metrics: Callable[[dict[str, float], int], None] | None = None,
    ) -> None:
        from sdpo_exp.models import load_model, load_tokenizer
        from sdpo_exp.sdpo.batching import BatchBuilder
        from sdpo_exp.training.distributed import make_accelerator

        self.cfg, self.task, self.run_dir = cfg, cfg.task, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.learn = _value(self.task.learn)
        self.model_name = str(self.task.served_model_name or cfg.model.name)
        self.started = time.time()
        self.acc = make_accelerator(cfg.trainer)
        if self.acc.num_processes > 1:
            raise ConfigError("task=serve runs in one process; start it without a multi-process launcher")
        tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
        self.chat_kwargs = dict(cfg.model.chat_template_kwargs or {})
        if int(self.task.max_tokens) > int(cfg.trainer.max_completion_tokens):
            log.warning("task.max_tokens=%d is above trainer.max_completion_tokens=%d: longer replies are cut "
                        "there when trained on", self.task.max_tokens, cfg.trainer.max_completion_tokens)  # fmt: skip
        self.learner: BackgroundLearner | None = None
        if self.learn == "online":
            model, learner = self._make_learner(BatchBuilder.from_config(cfg, tokenizer), on_metrics)
        else:
            model = load_model(
                cfg.model, cfg.paths.cache_dir, tokenizer, device=self.acc.device, trainable=False
            )
            model.requires_grad_(False)
        self.policy = ServedPolicy(model.eval(), tokenizer, self.chat_kwargs, self.acc.autocast,
                                   record_logprobs=OmegaConf.select(cfg, "loss.is_clip") is not None,
                                   generator=self._vllm_generator(tokenizer))  # fmt: skip
        if self.learn == "online":
            self.learner = learner(self.policy)
        self.conversations = Journal(self.run_dir / "conversations.jsonl")
        self.interactions = Journal(self.run_dir / "interactions.jsonl")
        self.book = TurnBook()
        self._lines = 0  # lines of interactions.jsonl
        self._log_lock = threading.Lock()
        self._signals: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()
        self._restore()
        if self.learner is not None:
            self.learner.start()

    # -- set-up ---------------------------------------------------------------------------------------
    def _make_learner(
        self, builder: Any, on_metrics: Any
    ) -> tuple[Any, Callable[[ServedPolicy], BackgroundLearner]]:
        from sdpo_exp.training.geometry import BatchGeometry
        from sdpo_exp.training.learner import Learner

        update_every, per_device = int(self.task.update_every), int(self.cfg.trainer.per_device_batch_size)
        geometry = BatchGeometry(min(per_device, update_every), -(-update_every // per_device), 1)
        total = int(self.task.max_updates or 1_000_000)
        learner = Learner(self.cfg, self.acc, builder, total, self.run_dir, SERVE_KEYS, geometry)
        saved = learner.resume(str(self.cfg.resume), self.run_dir)
        state = LearnState(**saved["serve"]) if saved else LearnState()
        # metrics of updates after the checkpoint (a kill before it was saved): they are made again
        if truncate_metrics(self.run_dir / "metrics.jsonl", state.updates if saved else -1):
            log.warning("Removed metrics rows logged after update %d by an earlier start", state.updates)
        if saved:
            log.info("Resumed the learner from %s: %d updates, %d interactions trained on", saved["path"],
                     state.updates, state.interactions_trained)  # fmt: skip
        served = copy.deepcopy(self.acc.unwrap_model(learner.model)).requires_grad_(False)

        def start(policy: ServedPolicy) -> BackgroundLearner:
            policy.version = state.updates
            return BackgroundLearner(learner, policy, update_every, self.task.max_updates, int(self.task.save_every),
                                     on_metrics or (lambda m, s: None), state)  # fmt: skip

        return served, start

    def _vllm_generator(self, tokenizer: Any) -> Any:
        if _value(self.cfg.generation.backend) != "vllm":
            return None
        from sdpo_exp.generation import make_generator
        from sdpo_exp.models.loader import pretrained_dir

        return make_generator(
            "vllm", None, tokenizer, self.chat_kwargs, 1, pretrained_dir(self.cfg.model, self.cfg.paths.cache_dir),
            OmegaConf.to_container(self.cfg.generation.vllm),
            record_logprobs=OmegaConf.select(self.cfg, "loss.is_clip") is not None,
        )  # fmt: skip

    def _restore(self) -> None:
        """Earlier turns and interactions of this run directory (a restart)."""
        records = self.interactions.records()
        self._lines = len(records)
        for record in records:
            completion_id = record.get("meta", {}).get("completion_id", record.get("id"))
            self.book.mark_linked(str(completion_id), str(record.get("followup", "")))
        turns = [r for r in self.conversations.records() if r.get("event") == "turn"]
        for record in turns:
            self.book.add(ServedTurn.from_record(record))
        if self.learner is not None:
            start = self.learner.state.lines_consumed
            for line in range(start, len(records)):
                self.learner.offer(line, interaction_from_record(records[line]))
            if len(records) > start:
                log.info("Queued %d logged interactions not trained on yet", len(records) - start)
        if turns or records:
            log.info("Restored %d served turns (%d waiting for an answer) and %d interactions from %s",
                     len(turns), self.book.pending, len(records), self.run_dir)  # fmt: skip

    # -- requests -------------------------------------------------------------------------------------
    def parse(self, raw: bytes) -> ChatRequest:
        gen = self.cfg.generation
        request = parse_chat_request(
            raw, int(self.task.max_tokens), min(int(gen.max_new_tokens), int(self.task.max_tokens)),
            int(self.task.max_messages), float(gen.temperature) if bool(gen.do_sample) else 0.0, float(gen.top_p),
        )  # fmt: skip
        tokens = self.policy.prompt_tokens(request.messages)
        if tokens > int(self.task.max_prompt_tokens):
            raise ApiError(400, f"the conversation has {tokens} prompt tokens; the limit is "
                           f"{self.task.max_prompt_tokens} (task.max_prompt_tokens)", "messages",
                           "context_length_exceeded")  # fmt: skip
        request.prompt_tokens = tokens
        return request

    def chat(self, request: ChatRequest) -> dict[str, Any]:
        """Log the interaction the request completes (if any), then generate, log and return the reply."""
        t0 = time.perf_counter()
        answered = self.book.claim(request.messages)
        if answered is not None:
            self._log_interaction(answered.interaction(request.messages[-1]["content"]))
        before = answered or self.book.previous(request.messages)
        conversation = before.conversation_id if before else uuid.uuid4().hex[:16]
        sample, version = self.policy.generate(
            request.messages, request.sampling(int(self.cfg.generation.top_k))
        )
        turn = ServedTurn(
            completion_id=f"chatcmpl-{uuid.uuid4().hex}", conversation_id=conversation,
            turn=sum(m["role"] == "assistant" for m in request.messages), context=request.messages,
            completion=sample.text, completion_ids=list(sample.ids), completion_ended=bool(sample.ended),
            completion_logprobs=sample.logprobs, weights_version=version,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        self.conversations.append({
            "event": "turn", "time": time.time(), **turn.to_record(),
            "answers": answered.completion_id if answered else None, "sampling": request.sampling(0),
            "model": request.model, "user": request.user, "seconds": round(seconds, 4),
            "ignored_fields": request.ignored, "max_tokens_asked": request.capped_from,
        })  # fmt: skip
        self.book.add(turn)
        self.counts["requests"] += 1
        log.info("%s: %d tokens in %.2f s (conversation %s, turn %d, weights v%d)%s", turn.completion_id,
                 len(sample.ids), seconds, conversation, turn.turn, version,
                 f"; answered {answered.completion_id}" if answered else "")  # fmt: skip
        return completion_body(turn.completion_id, self.model_name, sample.text, bool(sample.ended), request.prompt_tokens,
                               len(sample.ids))  # fmt: skip

    def _log_interaction(self, interaction: Interaction) -> None:
        interaction.meta["logged_at"] = time.time()
        with self._log_lock:  # lines and the learner's queue in the same order
            line = self._lines
            self.interactions.append(interaction.to_record())
            self._lines += 1
            self.counts["interactions"] += 1
            if self.learner is not None:
                self.learner.offer(line, interaction)

    def signal(self, completion_id: str) -> dict[str, Any]:
        """The advantages the user's answer gives each token of the reply `completion_id`."""
        if completion_id in self._signals:
            return self._signals[completion_id]
        turn = self.book.get(completion_id)
        if turn is None:
            raise ApiError(404, f"no reply with id '{completion_id}' was served in this run", "completion_id",
                           kind="not_found_error")  # fmt: skip
        followup = self.book.followup(completion_id)
        if followup is None:
            raise ApiError(409, f"the user has not answered '{completion_id}' yet: the signal needs the follow-up",
                           "completion_id", "no_followup")  # fmt: skip
        interaction = turn.interaction(followup)
        try:
            result = self.policy.run(lambda model: interaction_signal(
                model, self.policy.tokenizer, interaction, self.cfg.hindsight, self.chat_kwargs,
                int(self.task.max_prompt_tokens) * 2, int(self.task.chunk_size), self.task.color_limit))  # fmt: skip
        except SkipInteraction as exc:
            raise ApiError(422, f"this interaction gives no signal ({exc.reason})", code=exc.reason) from None
        result.update(completion_id=completion_id, followup=followup, weights_version=self.policy.version,
                      served_by_version=turn.weights_version)  # fmt: skip
        self._signals[completion_id] = result
        return result

    # -- status ---------------------------------------------------------------------------------------
    def count_rejected(self, status: int) -> None:
        self.counts["rejected"] += 1
        self.counts[f"rejected/{status}"] += 1

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "model": self.model_name, "learn": self.learn,
                               "weights_version": self.policy.version, "pending_turns": self.book.pending,
                               "requests": self.counts["requests"], "interactions": self._lines}  # fmt: skip
        if self.learner is not None:
            out.update(updates=self.learner.state.updates, queued=self.learner.queued,
                       update_every=self.learner.update_every, learner_error=self.learner.error)  # fmt: skip
        return out

    def close(self) -> dict[str, float]:
        """Stop learning (a running update finishes and is saved), write final/, close the files."""
        metrics: dict[str, float] = {
            "requests": self.counts["requests"], "rejected": self.counts["rejected"],
            **{k: v for k, v in self.counts.items() if k.startswith("rejected/")},
            "interactions": self._lines, "pending_turns": self.book.pending, "seconds": time.time() - self.started,
        }  # fmt: skip
        if self.learner is not None:
            self.learner.stop()
            state = self.learner.state
            if int(self.task.save_every) > 0 and state.updates and state.updates % int(self.task.save_every):
                self.learner.save()
            if state.updates and bool(self.cfg.trainer.save_final):
                self.learner.learner.save_final(self.run_dir / "final")
            metrics.update(updates=state.updates, interactions_trained=state.interactions_trained,
                           interactions_skipped=sum(state.skipped.values()))  # fmt: skip
        self.conversations.close()
        self.interactions.close()
        return metrics

"""Schemas of the ``loss`` group and of the hindsight (teacher context) settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from sdpo_exp.config.registry import schema


class HindsightTemplate(Enum):
    paper = "paper"  # paper, Table 1
    online_v1 = "online_v1"  # authors' online trainer
    offline_v1 = "offline_v1"  # authors' offline trainer (WildFeedback results)
    custom = "custom"  # `hindsight.custom`, a string with a {followup} placeholder


@dataclass
class HindsightConfig:
    template: HindsightTemplate = HindsightTemplate.paper
    custom: str | None = None


class TeacherKind(Enum):
    live = "live"  # current weights (the paper's choice)
    ema = "ema"  # exponential moving average of the weights
    base = "base"  # frozen initial weights
    trust_region = "trust_region"  # logits lerp(base, student, r)


@dataclass
class TeacherConfig:
    kind: TeacherKind = TeacherKind.live
    # ema: teacher <- (1 - ema_rate) * teacher + ema_rate * current weights, after each optimiser step
    ema_rate: float = 0.05
    # trust_region: teacher logits = (1 - r) * base logits + r * current logits, both on (x, o)
    trust_region_r: float = 0.5


class LengthNorm(Enum):
    sequence = "sequence"  # each sequence's sum divided by its own length, then mean over sequences
    token = "token"  # sum over every token of the batch divided by the batch's token count


class TailMode(Enum):
    bucket = "bucket"  # the K entries plus one bucket holding the remaining mass
    renormalize = "renormalize"  # the K entries renormalised to a distribution


@dataclass
class LossConfig:
    name: str = MISSING
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # beta of a k1 KL penalty to the frozen initial model; 0 disables it
    kl_to_ref_beta: float = 0.0
    # completion positions reduced at once when computing log-probs and KLs
    chunk_size: int = 128
    # how per-token terms become the batch loss (pg defaults to sequence, the others to token)
    length_norm: LengthNorm = LengthNorm.token
    # the teacher reuses the keys/values of the context it shares with the student (docs/losses.md)
    shared_prefix: bool = True
    # truncated importance weights min(pi_learner / pi_sampler, is_clip) per completion token, from the
    # sampler's recorded log-probs (vLLM samples: other kernels, bf16); null: off
    is_clip: float | None = None


@schema("loss", "pg")
@dataclass
class PGLossConfig(LossConfig):
    name: str = "pg"
    ignore_first_k: int = 0
    center_advantages: bool = False
    clip_advantages: float | None = None
    length_norm: LengthNorm = LengthNorm.sequence


@schema("loss", "topk")
@dataclass
class TopKLossConfig(LossConfig):
    name: str = "topk"
    k: int = 50
    tail: TailMode = TailMode.bucket  # tail handling of the top-K restriction


@schema("loss", "full_kl")
@dataclass
class FullKLLossConfig(LossConfig):
    name: str = "full_kl"


@schema("loss", "jsd")
@dataclass
class JSDLossConfig(LossConfig):
    name: str = "jsd"
    alpha: float = 0.5  # 0: forward KL(teacher || student), 1: reverse KL(student || teacher)
    top_k: int | None = None  # None: full vocabulary
    tail: TailMode = TailMode.bucket  # with top_k: tail bucket or renormalised top-K
    temperature: float = 1.0  # both distributions are log_softmax(logits / temperature)


@schema("loss", "sft")
@dataclass
class SFTLossConfig(LossConfig):
    name: str = "sft"

"""Control users: deterministic, drawn from their pool, and never about the reply."""

from __future__ import annotations

import re

import pytest

from sdpo_exp.errors import ConfigError
from sdpo_exp.users import rules
from sdpo_exp.users.controls import NEUTRAL, UNRELATED, ControlSimulator
from sdpo_exp.users.profiles import load_profile
from sdpo_exp.users.simulator import make_simulator

REQUESTS = ["How do I keep basil alive?", "What should I pack for a hike?", "How can I sleep better?"] * 3
REPLIES = [
    "Water it when the soil is dry and give it six hours of sun.",
    "- water\n- snacks\n- a map\n- a jacket",
    "Keep a regular schedule. **Avoid screens** before bed. ### Tips",
    "Sure! Here are some tips 😀",
    "",
    "I'm sorry, I can't help with that.",
    "Great question! Hope this helps.",
    "Short.",
    "word " * 200,
]
# Words with which a follow-up would point at the reply, and words that would judge its style
REFERRING = {"that", "this", "it", "its", "your", "you", "above", "answer", "reply", "response", "said", "again",
             "instead"}  # fmt: skip
STYLE = {"list", "lists", "bullet", "bullets", "format", "formatting", "markdown", "bold", "header", "headers",
         "emoji", "emojis", "short", "shorter", "long", "longer", "brief", "detail", "detailed", "simple",
         "simpler", "concise", "length", "words", "sentence", "sentences", "points", "better", "worse", "good",
         "great", "wrong", "right", "please", "less", "more", "perfect", "clear", "helpful", "nice"}  # fmt: skip


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z']+", text)}


@pytest.mark.parametrize("kind", ["unrelated", "neutral"])
def test_follow_ups_are_deterministic_and_from_the_pool(kind):
    profile = load_profile("answer_directly")
    first = ControlSimulator(profile, kind).followups(REQUESTS, REPLIES)
    again = ControlSimulator(profile, kind).followups(REQUESTS, REPLIES)
    assert first == again  # a new simulator (another process, a resumed run) says the same
    pool = UNRELATED if kind == "unrelated" else NEUTRAL
    assert all(f in pool for f in first)
    # one interaction at a time gives what the batch gave
    single = ControlSimulator(profile, kind)
    assert [single.followups([q], [r])[0] for q, r in zip(REQUESTS, REPLIES, strict=True)] == first
    assert single.metrics() == {"calls": len(REPLIES)}


def test_the_choice_spreads_over_the_pool():
    sim = ControlSimulator(load_profile("no_emojis"), "unrelated")
    drawn = sim.followups([f"request {i}" for i in range(400)], [f"reply {i}" for i in range(400)])
    counts = {m: drawn.count(m) for m in UNRELATED}
    assert min(counts.values()) >= 3 and max(counts.values()) <= 25  # about 12.5 each


def test_no_control_message_mentions_the_reply_or_its_style():
    for message in UNRELATED:  # a new request: neither points at the reply nor judges it
        assert not (_words(message) & (REFERRING | STYLE)), message
    for message in NEUTRAL:  # an acknowledgement: may point at the reply ("got it"), never judges it
        assert not (_words(message) & STYLE), message
    for message in (*UNRELATED, *NEUTRAL):
        assert message.strip()
        for rule in rules.RULES.values():  # nor repeats what the rule-based user says
            assert all(c.lower() not in message.lower() for c in rule.complaints)
    assert not set(UNRELATED) & set(NEUTRAL)
    assert not set(UNRELATED) & set(rules.APPROVALS) and not set(NEUTRAL) & set(rules.APPROVALS)


def test_follow_ups_do_not_depend_on_what_the_reply_breaks():
    # the profile's user complains about these replies; the control does not react to them at all
    profile = load_profile("answer_directly")
    sim = ControlSimulator(profile, "unrelated")
    complaints = {c for rule in rules.rules_for(profile.name, common=True) for c in rule.complaints}
    for followup in sim.followups(REQUESTS, REPLIES):
        assert not any(c in followup for c in complaints)
    # what a reply breaks changes nothing: the same text with or without a list gets a follow-up drawn
    # the same way (uniform over the pool) as any other text, never a reaction to the list
    plain, listed = "Water it when dry.", "- water it\n- when dry\n- in the sun"
    assert rules.broken_rules(profile.name, listed) and not rules.broken_rules(profile.name, plain)
    drawn = sim.followups(["q"] * 200, [f"{listed} {i}" for i in range(200)])
    assert len(set(drawn)) == len(UNRELATED) and not set(drawn) & complaints


def test_the_simulator_group_composes_controls(compose):
    cfg = compose("task=online", "simulator=unrelated", "user_profile=no_lists")
    sim = make_simulator(cfg.simulator, load_profile("no_lists"), str(cfg.paths.cache_dir))
    assert isinstance(sim, ControlSimulator) and sim.kind == "unrelated"
    neutral = compose("task=online", "simulator=neutral", "simulator.messages=[fine, okay]")
    own = make_simulator(neutral.simulator, load_profile("no_lists"), "")
    assert set(own.followups(REQUESTS, REPLIES)) <= {"fine", "okay"}


def test_bad_control_settings_are_refused(compose):
    with pytest.raises(ConfigError, match="empty message"):
        ControlSimulator(load_profile("no_lists"), "neutral", ["ok", "  "])
    with pytest.raises(ConfigError, match="unknown control user"):
        ControlSimulator(load_profile("no_lists"), "silent")
    with pytest.raises(ConfigError):  # a judge cannot be a control
        compose("judge=unrelated")

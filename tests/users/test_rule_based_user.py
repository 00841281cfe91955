"""The model-free user: every rule fires on a reply made for it and stays silent on one made against
it; the simulator and the judge are deterministic and follow the profile's rules."""

from __future__ import annotations

import pytest

from sdpo_exp.errors import ConfigError
from sdpo_exp.users import rules
from sdpo_exp.users.judge import RuleBasedJudge
from sdpo_exp.users.profiles import UserProfile, available_profiles, load_profile, opposite_of
from sdpo_exp.users.simulator import RuleBasedSimulator

PLAIN = "Water boils at 100 degrees Celsius at sea level because that is where its vapour pressure equals the air pressure."
LONG = " ".join(
    ["Boiling happens when the vapour pressure of a liquid reaches the surrounding pressure."] * 14
)
DETAILED = (
    "# Boiling point\n\n**Definition.** The boiling point is the temperature at which the vapour pressure "
    "equals the ambient pressure; furthermore, the thermodynamic equilibrium shifts with altitude.\n\n"
    "- At sea level: 100 °C\n- At 3,000 m: about 90 °C\n- In a pressure cooker: about 120 °C\n\n"
    "Consequently, the implementation of cooking times must account for the pressure. "
    + " ".join(
        ["The coefficient of the Clausius-Clapeyron relation describes this dependence precisely."] * 5
    )
)

# rule -> (a reply that breaks it, a reply that does not)
EXAMPLES = {
    "emojis": ("Sure, here it is 😀", PLAIN),
    "no_emojis": (PLAIN, "Water boils at 100 °C 🔥💧"),
    "phatic_opener": ("Great question! Water boils at 100 °C.", PLAIN),
    "phatic_closer": ("Water boils at 100 °C.\n\nI hope this helps!", PLAIN),
    "no_warmth": (PLAIN, "Great question! Water boils at 100 °C. Hope this helps!"),
    "heavy_markdown": ("## Answer\n\n**Water** boils at **100 °C**.", PLAIN),
    "long_list": ("Steps:\n- heat\n- wait\n- watch the bubbles", PLAIN),
    "no_list": (PLAIN, "Facts:\n1. 100 °C at sea level\n2. Lower up a mountain"),
    "plain_wall": (LONG, "## Boiling\n\n**100 °C** at sea level; " + LONG),
    "too_long": (LONG, PLAIN),
    "too_short": (PLAIN, LONG),
    "jargon": ("The thermodynamic equilibrium and the coefficient of the phase transition decide it.", PLAIN),
    "too_simple": ("It gets hot and bubbles.", DETAILED),
    "formal": ("Furthermore, the pressure matters; consequently, it varies. Thus it depends.", PLAIN),
    "casual": ("Hey, it's basically 100 °C, pretty cool stuff!", PLAIN),
    "question_back": ("It boils at 100 °C. Do you want to know more?", PLAIN),
    "hedging": ("It depends. It might be 100 °C, perhaps lower.", PLAIN),
    "exclamations": ("It boils at 100 °C! Amazing!", PLAIN),
    "preamble": ("There are many factors to consider. Water boils at 100 °C.", PLAIN),
    "code_block": ("```python\nprint(100)\n```", PLAIN),
    "repetitive": ("Water is wet. Water is wet. Water is wet. That is all.", PLAIN),
    "apology": ("I'm sorry, but as an AI I cannot help with boiling water.", PLAIN),
}


def test_every_rule_has_examples_and_every_profile_rule_exists():
    assert set(EXAMPLES) == set(rules.RULES)
    for profile, names in rules.PROFILE_RULES.items():
        assert names and all(n in rules.RULES for n in names), profile


@pytest.mark.parametrize("name", sorted(rules.RULES))
def test_rule_fires_on_its_reply_and_stays_silent_on_the_other(name):
    broken, fine = EXAMPLES[name]
    rule = rules.RULES[name]
    assert rule.broken(broken), f"{name} should fire on {broken!r}"
    assert not rule.broken(fine), f"{name} should stay silent on {fine!r}"


def test_profiles_load_with_reciprocal_opposites_and_rules():
    names = available_profiles()
    assert len(names) >= 15
    paper = {
        "no_emojis",
        "no_phatic",
        "answer_directly",
        "concise_casual_beginner",
        "detailed_professional_expert",
    }
    assert paper <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.description.startswith("You are playing the role of a user")
        assert name in rules.PROFILE_RULES, f"the rule-based user cannot play {name}"
        if profile.opposite:
            assert opposite_of(profile).opposite == name
    for name in paper:
        assert load_profile(name).opposite, name  # each paper profile can be flipped
    with pytest.raises(ConfigError, match="unknown user profile"):
        load_profile("nope")


def test_simulator_complains_about_what_the_profile_dislikes_and_approves_otherwise():
    sim = RuleBasedSimulator(load_profile("no_emojis"))
    complaint = sim.followup("Sure! 🎉 Water boils at 100 °C.")
    assert "emoji" in complaint.lower()
    approval = sim.followup(PLAIN)
    assert approval in rules.APPROVALS
    # deterministic: the same reply always gets the same follow-up; phrasing varies across replies
    assert sim.followups(["q"] * 2, ["Sure! 🎉 Water boils at 100 °C."] * 2) == [complaint, complaint]
    phrasings = {sim.followup(f"Reply number {i} 😀") for i in range(30)}
    assert len(phrasings) > 1 and phrasings <= set(rules.RULES["emojis"].complaints)
    assert sim.metrics()["rule/emojis"] >= 31 and sim.metrics()["approvals"] == 1


def test_simulator_names_at_most_max_complaints_problems():
    reply = "Great question! " + LONG + "\n\nI hope this helps!"
    one = RuleBasedSimulator(load_profile("answer_directly"), max_complaints=1).followup(reply)
    two = RuleBasedSimulator(load_profile("no_phatic"), max_complaints=2).followup(reply)
    assert one in rules.RULES["too_long"].complaints
    opener, closer = rules.RULES["phatic_opener"].complaints, rules.RULES["phatic_closer"].complaints
    assert any(two.startswith(o) for o in opener) and any(two.endswith(c) for c in closer)


def test_judge_prefers_the_reply_with_fewer_broken_rules_in_both_orders():
    judge = RuleBasedJudge(load_profile("concise_casual_beginner"))
    assert judge.compare(["q"], [PLAIN], [DETAILED]) == ["A"]
    assert judge.compare(["q"], [DETAILED], [PLAIN]) == ["B"]
    assert judge.compare(["q"], [PLAIN], [PLAIN]) == ["C"]
    expert = RuleBasedJudge(load_profile("detailed_professional_expert"))
    assert expert.compare(["q"], [PLAIN], [DETAILED]) == ["B"]  # the opposite user, the opposite verdict


def test_a_profile_without_rules_is_a_clear_error():
    with pytest.raises(ConfigError, match="no rules for profile 'custom'"):
        RuleBasedSimulator(UserProfile("custom", "You are playing the role of a user who ..."))
    with pytest.raises(ConfigError, match="no rules"):
        RuleBasedJudge(UserProfile("custom", "..."))


def test_every_user_dislikes_repetition_and_an_opening_apology_unless_told_otherwise():
    sorry = "I'm sorry for any misunderstanding, but as a chatbot I cannot help with that."
    looping = "Boil the water. Boil the water. Boil the water. Boil the water."
    judge = RuleBasedJudge(load_profile("answer_directly"))
    assert judge.compare(["q", "q"], [PLAIN, PLAIN], [sorry, looping]) == ["A", "A"]
    assert RuleBasedJudge(load_profile("answer_directly"), common_rules=False).compare(
        ["q"], [PLAIN], [sorry]
    ) == ["C"]
    sim = RuleBasedSimulator(load_profile("no_emojis"))
    assert sim.followup(sorry) in rules.RULES["apology"].complaints
    assert sim.followup(looping) in rules.RULES["repetitive"].complaints
    assert (
        RuleBasedSimulator(load_profile("no_emojis"), common_rules=False).followup(sorry) in rules.APPROVALS
    )
    # the profile's own rules come first
    both = RuleBasedSimulator(load_profile("no_emojis"), max_complaints=1).followup(sorry + " 😀")
    assert both in rules.RULES["emojis"].complaints

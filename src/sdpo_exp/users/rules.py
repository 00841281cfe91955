"""What each profile's user dislikes, as deterministic checks on a reply, and what that user says.

A rule looks at the assistant's reply only and says whether it breaks the user's preference; it
carries the follow-ups such a user would send. The rule-based simulator sends one of them for each
broken rule (the first two, at most), the rule-based judge prefers the reply that breaks fewer rules.
Which phrasing is sent is a function of the reply's text (a hash), so the same reply always gets
the same follow-up while different replies get varied ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\u2b50\u2b55\u2705\u274c\u2728\ufe0f]"
)
_OPENERS = re.compile(
    r"^\W*(great|good|excellent|fantastic|wonderful|interesting|what a great|awesome) (question|point|idea)"
    r"|^\W*(perfect|absolutely|certainly|of course|sure thing|sure|great|excellent|wonderful)\s*[!.,]"
    r"|^\W*(i'?d be (happy|glad)|i'?m (happy|glad) to|happy to help|thanks for (asking|your question))",
    re.IGNORECASE,
)
_CLOSERS = re.compile(
    r"(hope (this|that|it) helps|let me know if|feel free to|don'?t hesitate|happy to help|"
    r"have a (great|nice|good) day|good luck|happy (coding|learning|cooking)|any (other|more|further) questions)"
    r"[^\n]*$",
    re.IGNORECASE,
)
_LIST_LINE = re.compile(r"^\s*([-*•+]|\d+[.)])\s+\S", re.MULTILINE)
_HEADER = re.compile(r"^\s*#{1,6}\s+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_JARGON = re.compile(
    r"\b(algorithm\w*|asymptotic\w*|heuristic\w*|paradigm\w*|instantiat\w*|polymorphi\w*|"
    r"abstraction\w*|idempoten\w*|orthogonal\w*|stochastic\w*|parameteri[sz]\w*|optimi[sz]ation|"
    r"infrastructure|implementation|architecture|methodolog\w*|framework\w*|latency|throughput|"
    r"eigen\w*|derivative\w*|coefficient\w*|thermodynamic\w*|biochemi\w*|metaboli\w*|synthesi[sz]\w*)\b",
    re.IGNORECASE,
)
_FORMAL = re.compile(
    r"\b(furthermore|moreover|consequently|therefore|thus|hence|in conclusion|additionally|"
    r"it is (important|essential|worth) (to note|noting)|with respect to|in accordance with)\b",
    re.IGNORECASE,
)
_CASUAL = re.compile(
    r"\b(hey|gonna|wanna|kinda|sorta|stuff|cool|awesome|yeah|yep|nope|basically|pretty much|super)\b|!",
    re.IGNORECASE,
)
_HEDGES = re.compile(
    r"\b(it depends|might|may or may not|perhaps|possibly|could be|not sure|hard to say|generally|"
    r"in some cases|arguably|it'?s difficult to)\b",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\W*(there are (many|several|a few)|when it comes to|it'?s important to|before (we|i|answering)|"
    r"let'?s (start|begin|dive|take)|to answer (this|your)|first, let'?s|in order to understand|"
    r"this is a (great|good|common|complex))",
    re.IGNORECASE,
)


_APOLOGY = re.compile(
    r"^\W*(i'?m sorry|i apologi[sz]e|sorry|apologies|i'?m afraid|as an ai|i cannot|i can'?t)", re.I
)


def words(text: str) -> list[str]:
    return re.findall(r"\w+(?:['’]\w+)?", text)


def opens_with_apology(text: str) -> bool:
    """An apology or a refusal in the first words ("I'm sorry", "As an AI", "I can't")."""
    return bool(_APOLOGY.search(text))


def repetitive(text: str) -> bool:
    """A reply that repeats itself: a sentence said three times or more, or few distinct words."""
    sentences = [s.strip().lower() for s in re.split(r"[.!?\n]+", text) if len(s.strip()) > 10]
    if sentences and max(sentences.count(s) for s in sentences) >= 3:
        return True
    tokens = words(text.lower())
    return len(tokens) >= 40 and len(set(tokens)) / len(tokens) < 0.35


def has_emoji(text: str) -> bool:
    return bool(_EMOJI.search(text))


def phatic_opener(text: str) -> bool:
    return bool(_OPENERS.search(text.strip()))


def phatic_closer(text: str) -> bool:
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return bool(_CLOSERS.search(last))


def list_lines(text: str) -> int:
    return len(_LIST_LINE.findall(text))


def markdown_marks(text: str) -> int:
    return len(_HEADER.findall(text)) + len(_BOLD.findall(text)) + text.count("```") // 2


def jargon_count(text: str) -> int:
    return len(_JARGON.findall(text))


def formal_marks(text: str) -> int:
    return len(_FORMAL.findall(text))


def casual_marks(text: str) -> int:
    return len(_CASUAL.findall(text))


@dataclass(frozen=True)
class Rule:
    name: str
    broken: Callable[[str], bool]  # True when the reply goes against the user's preference
    complaints: tuple[str, ...]  # what the user says about it (one is picked per reply)


def _rule(name: str, broken: Callable[[str], bool], *complaints: str) -> Rule:
    return Rule(name, broken, complaints)


LONG_WORDS = 150  # a "long" reply for the users who want short ones
SHORT_WORDS = 60  # a "short" reply for the users who want detail

RULES: dict[str, Rule] = {
    r.name: r
    for r in [
        _rule(
            "emojis",
            has_emoji,
            "Please drop the emojis.",
            "No emojis or icons, please.",
            "Can you answer without the emojis?",
        ),
        _rule(
            "no_emojis",
            lambda t: not has_emoji(t),
            "Add some emojis, it feels so dry!",
            "Where are the emojis? I like them.",
            "Could you liven it up with a few emojis?",
        ),
        _rule(
            "phatic_opener",
            phatic_opener,
            "Skip the compliments at the start and just answer.",
            "No need for the 'great question' part.",
            "Just get to the answer, no praise first.",
        ),
        _rule(
            "phatic_closer",
            phatic_closer,
            "You don't need the 'hope this helps' line at the end.",
            "Drop the sign-off at the end.",
            "Leave out the closing pleasantries.",
        ),
        _rule(
            "no_warmth",
            lambda t: not (phatic_opener(t) or phatic_closer(t)),
            "That feels a bit cold. A friendly word would be nice.",
            "Could you be a little warmer? Say hi or wish me luck.",
            "A friendly opener or closing line would be nice.",
        ),
        _rule(
            "heavy_markdown",
            lambda t: markdown_marks(t) >= 2,
            "Less formatting please, plain text is fine.",
            "Too much bold and headers. Just write it plainly.",
            "Please skip the markdown.",
        ),
        _rule(
            "long_list",
            lambda t: list_lines(t) >= 3,
            "Not a list, please. Just tell me in a sentence or two.",
            "Fewer bullet points, please.",
            "I don't want a long list.",
        ),
        _rule(
            "no_list",
            lambda t: list_lines(t) < 2,
            "Could you put that in a list?",
            "Bullet points would make this easier to scan.",
            "Please break it into a list.",
        ),
        _rule(
            "plain_wall",
            lambda t: markdown_marks(t) == 0 and list_lines(t) == 0 and len(words(t)) > 40,
            "Can you format it with headers or bold key points?",
            "Please add some structure and formatting.",
            "A bit of formatting would help me read this.",
        ),
        _rule(
            "too_long",
            lambda t: len(words(t)) > LONG_WORDS,
            "Too long. Can you keep it short?",
            "Shorter please.",
            "That's a lot of text, just the gist please.",
        ),
        _rule(
            "too_short",
            lambda t: len(words(t)) < SHORT_WORDS,
            "That's too brief. I'd like more detail.",
            "Can you go into more depth?",
            "Please expand on that with more detail.",
        ),
        _rule(
            "jargon",
            lambda t: jargon_count(t) >= 2,
            "Too technical for me. Can you explain it simply?",
            "I'm a beginner, please use plainer words.",
            "Less jargon please.",
        ),
        _rule(
            "too_simple",
            lambda t: jargon_count(t) == 0 and formal_marks(t) == 0,
            "That's too basic. Give me the technical picture.",
            "I'm an expert, you can be more technical.",
            "Please be more precise and technical.",
        ),
        _rule(
            "formal",
            lambda t: formal_marks(t) >= 2,
            "Too formal. Just talk to me normally.",
            "Can you say it more casually?",
            "Less stiff, please.",
        ),
        _rule(
            "casual",
            lambda t: casual_marks(t) >= 2,
            "Please keep it professional.",
            "A more formal tone, please.",
            "Less chatty, more professional please.",
        ),
        _rule(
            "question_back",
            lambda t: t.strip().endswith("?"),
            "Don't end with a question, just answer.",
            "No need to ask me things back.",
            "Please don't finish with a question.",
        ),
        _rule(
            "hedging",
            lambda t: len(_HEDGES.findall(t)) >= 2,
            "Just commit to an answer.",
            "Less hedging please. What's your actual answer?",
            "Be decisive, please.",
        ),
        _rule(
            "exclamations",
            lambda t: t.count("!") >= 2,
            "Calm down with the exclamation marks.",
            "Fewer exclamation marks, please.",
            "Tone it down a little.",
        ),
        _rule(
            "preamble",
            lambda t: bool(_PREAMBLE.search(t.strip())),
            "Answer first, context after.",
            "Lead with the answer please.",
            "Get to the point in the first sentence.",
        ),
        _rule(
            "repetitive",
            repetitive,
            "You keep repeating the same thing.",
            "That says the same thing over and over. Just answer once.",
            "Why does it repeat itself so much?",
        ),
        _rule(
            "apology",
            opens_with_apology,
            "No need to apologise, just answer the question.",
            "Why the apology? I asked a normal question.",
            "Please just answer what I asked.",
        ),
        _rule(
            "code_block",
            lambda t: "```" in t,
            "No code blocks please, just explain.",
            "I don't need code, an explanation is enough.",
            "Skip the code.",
        ),
    ]  # fmt: skip
}

# Which rules each profile's user applies (profiles without an entry cannot use the rule-based user).
PROFILE_RULES: dict[str, tuple[str, ...]] = {
    "no_emojis": ("emojis",),
    "loves_emojis": ("no_emojis",),
    "no_phatic": ("phatic_opener", "phatic_closer"),
    "warm_phatic": ("no_warmth",),
    "answer_directly": ("heavy_markdown", "long_list", "too_long"),
    "more_formatting": ("plain_wall", "no_list"),
    "concise_casual_beginner": ("too_long", "jargon", "formal"),
    "detailed_professional_expert": ("too_short", "too_simple", "casual"),
    "no_lists": ("long_list",),
    "likes_lists": ("no_list",),
    "brief": ("too_long", "preamble"),
    "thorough": ("too_short",),
    "plain_language": ("jargon",),
    "technical": ("too_simple",),
    "committing": ("hedging",),
    "no_questions_back": ("question_back",),
    "calm_tone": ("exclamations", "emojis"),
    "answer_first": ("preamble",),
    "formal": ("casual", "emojis"),
    "casual": ("formal",),
    "no_code": ("code_block",),
}

# What every user dislikes, whatever the profile: a reply that repeats itself, or that opens with an
# apology or a refusal of a harmless everyday request. A model judge would not prefer such a reply; a
# rule-based judge that saw only the profile's rules would (a policy that collapses into "I'm sorry
# ..." breaks no style rule). The rule-based user and judge apply them after the profile's rules
# (`common_rules: true`, the default).
COMMON_RULES: tuple[str, ...] = ("repetitive", "apology")

APPROVALS = ("That works, thanks.", "Good, that's what I wanted.", "OK, that's clear.")


def rules_for(profile: str, common: bool = False) -> tuple[Rule, ...]:
    """The profile's rules, then (with `common`) the rules every user holds."""
    if profile not in PROFILE_RULES:
        raise KeyError(profile)
    names = list(PROFILE_RULES[profile])
    if common:
        names += [n for n in COMMON_RULES if n not in names]
    return tuple(RULES[name] for name in names)


def broken_rules(profile: str, reply: str, common: bool = False) -> list[Rule]:
    """The rules of `rules_for(profile, common)` that `reply` breaks, in that order."""
    return [rule for rule in rules_for(profile, common) if rule.broken(reply)]

"""Model-backed simulator and judge on the hf backend: the paper's prompts go to a real local model
(tiny_random, chosen with `model@simulator.model=tiny_random`), greedy, and its replies come back."""

from __future__ import annotations

from sdpo_exp.evaluation.pairs import judge_win_rate
from sdpo_exp.users.judge import PromptedJudge, make_judge
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.simulator import PromptedSimulator, make_simulator


def test_hf_simulator_and_judge_prompt_a_local_model(compose, cache_dir):
    cfg = compose("simulator=smollm2", "model@simulator.model=tiny_random", "judge=smollm2",
                  "model@judge.model=tiny_random", "user_profile=no_emojis")  # fmt: skip
    profile = UserProfile.from_config(cfg.user_profile)
    simulator = make_simulator(cfg.simulator, profile, str(cache_dir))
    assert isinstance(simulator, PromptedSimulator)
    generator = simulator.chat.generator
    seen = []
    real = generator.generate

    def spy(chats, sampling):
        seen.append((chats, sampling))
        return real(chats, sampling)

    generator.generate = spy
    first = simulator.followups(["Hi?", "Why?"], ["Hello 😀", "Because."])
    again = simulator.followups(["Hi?", "Why?"], ["Hello 😀", "Because."])
    assert first == again  # greedy (temperature 0)
    chats, sampling = seen[0]
    assert chats[0][0]["content"].startswith("USER PROFILE: " + profile.description)
    assert (
        chats[0][1]["content"]
        == "Original user request: Hi?\nAssistant response: Hello 😀\nWrite the user's next message."
    )
    assert sampling.do_sample is False and sampling.max_new_tokens == cfg.simulator.max_new_tokens
    assert all(r is None or (isinstance(r, str) and r) for r in first)

    judge = make_judge(cfg.judge, profile, str(cache_dir))
    assert isinstance(judge, PromptedJudge)
    result = judge_win_rate(judge, ["Hi?"] * 2, ["Hello", "Hey"], ["Hello 😀", "Hey 🎉"], bootstrap_samples=0)
    # a random model does not answer with one letter: every verdict is invalid and scored as a tie
    assert (result.pairs, result.invalid, result.ties) == (2, 4, 2)

"""The simulated user of the online setting (paper, Section 4.2): style profiles (`profiles`), the
rules of the model-free user (`rules`), the paper's prompts (`prompts`), user simulators
(`simulator`), pairwise judges (`judge`) and the chat backends they run on (`chat`, `anthropic`)."""

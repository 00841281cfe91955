"""Evaluation of policies against a baseline: pairwise verdicts become win rates (`winrate`)."""

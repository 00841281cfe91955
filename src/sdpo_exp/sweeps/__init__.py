"""Sweeps: the summary table of a multirun (`python -m sdpo_exp.sweeps SWEEP_DIR`)."""

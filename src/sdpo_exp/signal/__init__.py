"""Signal analysis: per-token hindsight advantages for a file of cases, as JSON, heatmaps and HTML.

Modules: `cases` (the cases file), `scoring` (advantages through the SDPO core), `records`
(the signals.json document), `heatmap` and `html` (the figures and the token page), `colors`
(the shared colour scale), `tokens` (readable token strings).
"""

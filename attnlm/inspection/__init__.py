"""Looking inside a model: what attention does, as numbers, tables, graphs and pictures.

attention.py        a model's attention weights on a text, grouped by word or grapheme cluster
attention_table.py  those weights as a probability table in the terminal
graph.py            those weights as a directed graph (Graphviz source, SVG, PNG)
attention_stats.py  what a head does, in words (the Observation column's attention half)
heads.py            what a head does, as scores: previous-token, duplicate-token and induction heads
ablation.py         what a head is needed for: the loss and the predictions with it switched off
baseline.py         what a head that learned nothing (uniform attention) would show, to set weights against
trace.py            one head's data flow, stage by stage (`attnlm trace`)
plots.py            heat maps for a PNG file or for TensorBoard
probe.py            the probe text whose attention (and a small model's weights) is recorded after every epoch
"""

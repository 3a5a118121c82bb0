"""The language model and what runs it outside training.

model.py            the model: embeddings, causal multi-head attention blocks, the head (needs only torch)
kv_cache.py         the sampler's fast path: each layer's keys and values kept, one new position per step
generate.py         sampling: temperature, top-k and top-p filtering, the sliding context, the cached loop
evaluation.py       loss and next-character accuracy over a text, every prediction counted once

Nothing here imports torch at package import, so the CLI can load attnlm.lm.* lazily.
"""

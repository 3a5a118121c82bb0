"""The data layer: text sources -> a prepared, memory-mapped corpus -> batches and evaluation windows.

sources.py   files, folders, globs and lists of them, read as UTF-8 in chunks
vocab.py     the character vocabulary, the vectorised chunk encoder, and checks of text against a vocabulary
prepare.py   the two streaming passes that write a prepared corpus
cache.py     where prepared corpora live, keyed by the sources' state, written atomically under a lock
memmap.py    the prepared format on disk and the memory-mapped Corpus
corpus.py    load_corpus / prepare_sources: the front door that ties them together
batches.py   the seeded batch sampler and the validation windows (full pass or fixed subset)
tasks.py     built-in tasks (data.task): windows generated on the fly with the mask of their predictable part
shakespeare.py  `attnlm data shakespeare`, the default corpus
"""

from attnlm.data.batches import BatchSampler, EvalPlan, eval_windows, steps_per_epoch
from attnlm.data.cache import default_cache_dir
from attnlm.data.corpus import Prepared, load_corpus, prepare_sources
from attnlm.data.memmap import Corpus
from attnlm.data.sources import read_text
from attnlm.data.vocab import Vocab

__all__ = ["BatchSampler", "Corpus", "EvalPlan", "Prepared", "Vocab", "default_cache_dir", "eval_windows",
           "load_corpus", "prepare_sources", "read_text", "steps_per_epoch"]

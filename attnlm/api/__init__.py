"""The Python API: train a model, load one, sample, evaluate and look at its attention. Every CLI command's
body lives in this package (one module per command), so a notebook, the command line and the explorer take
the same path.

    import attnlm
    run = attnlm.train("configs/tiny.yaml", ["train.epochs=2"])
    model = attnlm.load(run.dir)
    print(model.generate("ROMEO:", max_new_tokens=100, seed=0))

Errors a user can cause raise attnlm.UserError with the same one-line message the CLI prints.
"""

from attnlm.api.model import Evaluation, Model, default_prompt, load
from attnlm.api.run import Run, resume, train

__all__ = ["Evaluation", "Model", "Run", "default_prompt", "load", "resume", "train"]

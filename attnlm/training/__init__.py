"""Training a model.

loop.py             the Trainer: set-up, the step, epochs, interrupts
build.py            what a config builds: corpus, model (fresh, resumed or fine-tuned), device, compiled blocks
checkpoints.py      best.pt and last.pt: written, room checked before a run, a refused write worded
state.py            what a checkpoint holds besides the weights, and the epoch bookkeeping
resume_check.py     what a resume may change (edits of config.yaml, overrides) and whether the data is the run's
clock.py            wall time, the max_time budget and fitting epochs into it
optim.py            AdamW and Muon
schedule.py         the learning-rate schedule
guard.py            the non-finite loss and gradient guard
interrupts.py       Ctrl-C and SIGTERM as a request to stop at the next step
reporter.py         everything shown or logged: the table, TensorBoard, metrics.jsonl, samples, probe pictures
epoch_table.py      the epoch table, its Observation column and the loss chart
tensorboard_log.py  TensorBoard writing that never stops a run
"""

from attnlm.training.loop import Trainer

__all__ = ["Trainer"]

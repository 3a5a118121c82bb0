"""What a run leaves on disk and how it is read back.

checkpoint.py  the checkpoint format: saved atomically, read with weights_only (a file can never run code)
exported.py    the export format (`attnlm export`): what a folder holds and how it is read back
load.py        a model from either: a checkpoint file or an export folder
export.py      writing an export folder from a checkpoint
run_dir.py     run folders: made without clobbering one, locked while training, found by commands
run_info.py    what produced a run: its config.yaml and run.json (torch, device, commit, command line, data)
metrics.py     metrics.jsonl and summary.json: read, rewound on resume, summarised for `attnlm runs`
"""

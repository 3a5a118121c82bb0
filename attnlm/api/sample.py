"""`attnlm sample`: stream characters of a trained model to stdout as they are drawn."""

from __future__ import annotations

import sys

from attnlm.checks import SamplingOptions, check_request


def sample(*, run: str | None, checkpoint: str | None, prompt: str | None, max_new_tokens: int,
           opts: SamplingOptions, num_samples: int, seed: int, device_name: str, use_cache: bool = True) -> None:
    check_request(opts, max_new_tokens, num_samples, prompt, device_name, seed)  # before torch: a typo costs nothing
    import torch

    from attnlm.api.model import default_prompt, load
    from attnlm.device import resolve_device
    from attnlm.store.run_dir import resolve_checkpoint

    device = resolve_device(device_name, "--device")  # before any loading: a typo costs nothing
    model = load(resolve_checkpoint(run, checkpoint), device=device)
    prompt = default_prompt(model.vocab.chars) if prompt is None else prompt
    model.encode(prompt, "the prompt", "remove them or train on text that has them")
    generator = torch.Generator().manual_seed(seed)  # one stream through all the samples

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    for i in range(num_samples):
        if i:
            sys.stdout.write("\n" + "-" * 40 + "\n")
        sys.stdout.write(prompt)
        model.generate(prompt, max_new_tokens, opts.temperature, opts.top_k, opts.top_p, use_cache=use_cache,
                       on_text=emit, generator=generator)
    sys.stdout.write("\n")
    sys.stdout.flush()

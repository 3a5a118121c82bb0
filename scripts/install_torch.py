"""Install torch==2.13.0 into the running Python's environment in the build that fits this machine, then say
which build it is. `make install` runs it with the venv's Python; on Windows run it the same way by hand.

- Linux without an NVIDIA GPU (`nvidia-smi -L` lists none): the CPU build from PyTorch's CPU wheel index
  (https://download.pytorch.org/whl/cpu, as pytorch.org documents), a few hundred MB instead of the
  multi-GB CUDA build that the package index serves for Linux. When that index cannot be reached within
  5 seconds (no retries), a note says so and the package index is used instead.
- An NVIDIA GPU, macOS (its build has Apple's MPS) or Windows: the default build from the package index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TIMEOUT = 5  # seconds, for the probe and each of pip's connections to the CPU index


def nvidia_gpus() -> list[str]:
    """The GPUs `nvidia-smi -L` lists ("GPU 0: NVIDIA H100 ..."); none without the driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU")] if listing.returncode == 0 else []


def unreachable(url: str) -> str | None:
    """Why `url` cannot be fetched within TIMEOUT seconds, or None when it can. pip itself would not say:
    an index it cannot reach is only a warning, and other sources it is configured with may still serve torch."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT):
            return None
    except urllib.error.URLError as e:
        return str(e.reason)
    except (OSError, ValueError) as e:
        return str(e) or type(e).__name__


def pip_install(*args: str) -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args, TORCH]).returncode == 0


def installed_build() -> str:
    probe = ("import sys, torch\n"
             "build = f'CUDA {torch.version.cuda}' if torch.version.cuda else 'CPU'\n"
             "if torch.backends.mps.is_built():\n    build += ' (with Apple MPS)'\n"
             "print(f'torch {torch.__version__} in {sys.prefix}: the {build} build')")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else f"torch does not import: {result.stderr.strip()}"


def main() -> int:
    gpus = nvidia_gpus()
    if gpus:
        print(f"{gpus[0]}: installing the default (CUDA) build of {TORCH}", flush=True)
        ok = pip_install()
    elif not sys.platform.startswith("linux"):
        print(f"installing {TORCH} from the package index (on {sys.platform} that build has no CUDA packages)",
              flush=True)
        ok = pip_install()
    else:
        print(f"no NVIDIA GPU: installing the CPU build of {TORCH} from {CPU_INDEX}", flush=True)
        start = time.monotonic()
        why = unreachable(CPU_INDEX + "/torch/")
        ok = why is None and pip_install("--index-url", CPU_INDEX, "--timeout", str(TIMEOUT), "--retries", "0")
        if not ok:
            print(f"note: {CPU_INDEX} " + (f"cannot be reached ({why})" if why else "did not serve torch") +
                  f" [{time.monotonic() - start:.1f} s]; installing {TORCH} from the package index instead "
                  "(on Linux that is the CUDA build unless the index serves another)", flush=True)
            ok = pip_install()
    print(installed_build() if ok else f"error: pip could not install {TORCH}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

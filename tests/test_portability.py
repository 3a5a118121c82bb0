"""What Windows and macOS need that Linux can check: no POSIX-only module at start-up, --help and --version
without torch. (Nothing here runs on Windows or a Mac; docs/distributed.md says what was run where.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from run_helpers import ROOT, run_cli

import attnlm

IMPORT_ALL = """
import importlib, pkgutil, sys
import attnlm
names = [m.name for m in pkgutil.walk_packages(attnlm.__path__, "attnlm.") if m.name != "attnlm.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names), "modules;", "torch" in sys.modules)
"""


def without_fcntl(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import fcntl, as on Windows (a sitecustomize runs before any import)."""
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["fcntl"] = None\n', encoding="utf-8")
    return {"PYTHONPATH": str(tmp_path)}


def test_every_module_imports_and_the_cli_starts_without_fcntl(tmp_path: Path) -> None:
    env = without_fcntl(tmp_path)
    check = subprocess.run([sys.executable, "-c", "import fcntl"], env={**os.environ, **env}, capture_output=True,
                           text=True)
    assert "ModuleNotFoundError" in check.stderr  # the hook works: fcntl really is unavailable
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    count = int(result.stdout.split()[0])
    assert count >= 25, result.stdout  # the whole package, subpackages included
    for args in (["--help"], ["--version"]):
        out = run_cli(*args, env=env, fresh=True)
        assert out.returncode == 0 and out.stderr == "", out.stderr
    assert run_cli("--version", env=env, fresh=True).stdout == f"attnlm {attnlm.__version__}\n"


def test_help_version_and_option_mistakes_do_not_import_torch() -> None:
    """Importing torch takes one to three seconds: the CLI loads it only in the commands that need it, and a
    mistake in a new run's config or in sampling's options is answered before that."""
    code = ("import sys\nfrom attnlm.cli import main\nsys.argv = ['attnlm', *sys.argv[1:]]\ntry:\n    main()\n"
            "except SystemExit as e:\n    print('exit', e.code)\nprint('torch loaded:', 'torch' in sys.modules)")
    for args, code_expected in ((["--help"], 0), (["--version"], 0),
                                (["train", "--config", "configs/tiny.yaml", "--set", "train.lr=-1"], 2),
                                (["train", "--config", "missing.yaml"], 2),
                                (["sample", "--top-k", "0"], 2), (["sample", "--device", "gpu"], 2)):
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.splitlines()[-2:] == [f"exit {code_expected}", "torch loaded: False"], \
            result.stdout + result.stderr


def test_a_lock_is_exclusive_until_given_back(tmp_path: Path) -> None:
    """Two open files of one lock file conflict like two processes would (flock here, msvcrt on Windows)."""
    from attnlm import locks

    first, second = locks.open_lock_file(tmp_path / ".lock"), locks.open_lock_file(tmp_path / ".lock")
    assert locks.try_lock(first)
    assert not locks.try_lock(second)
    locks.release(first)
    assert locks.try_lock(second)
    locks.release(second)

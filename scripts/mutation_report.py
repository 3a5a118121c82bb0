"""`make mutate`: mutmut over the modules whose correctness is the product, then the kill rate per module and
every mutant the tests did not kill, with its diff (docs/mutation.md).

    python scripts/mutation_report.py                                  # every module in [tool.mutmut] only_mutate
    python scripts/mutation_report.py attnlm/checks.py attnlm/lm/generate.py
    python scripts/mutation_report.py --sample 60                      # 60 mutants per module, drawn at random
    python scripts/mutation_report.py --report-only                    # the table and file from the last results

mutmut keeps its copy of the project and its results in mutants/; the first run also records which tests call
which function (one serial run of the whole suite), later runs reuse that. The chosen mutants are tested again
on every run, so the figures are those of the tests as they are now. Ctrl-C stops the run; the report then
counts the untested mutants as "not checked".

Every mutant of every module takes hours on 2 cores. --sample N tests N of each module's mutants, drawn with
--seed (the same seed draws the same ones, so a rerun after new tests is comparable), and gives each kill rate
with its 95 % interval.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: mutmut brings the toml package there
    import toml as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "mutants-surviving.txt"
# mutmut's statuses that count as detected: the tests failed, or ran past the time limit (an endless loop).
DETECTED = ("killed", "timeout", "caught by type check")
COLUMNS = ("killed", "survived", "no tests", "timeout", "suspicious", "not checked")


def configured_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["mutmut"]["only_mutate"])


def mutant_prefix(module: str) -> str:
    """attnlm/lm/generate.py -> attnlm.lm.generate. (every mutant's name starts with it)."""
    return module.removesuffix(".py").replace("/", ".") + "."


def mutmut() -> str:
    """The mutmut next to this interpreter (the project's venv), else the one on PATH."""
    here = Path(sys.executable).parent / "mutmut"
    found = str(here) if here.is_file() else shutil.which("mutmut")
    if found is None:
        sys.exit("mutmut is not installed: `make install` puts it in .venv (the dev extra)")
    return found


def env() -> dict[str, str]:
    """The venv's bin first on PATH, as if activated (a test runs the `attnlm` console script), and UTF-8 out:
    mutant names hold "ǁ"."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONIOENCODING": "utf-8"}


def run_mutmut(patterns: list[str]) -> tuple[float, str]:
    """`mutmut run PATTERN ...` in the foreground, every module in one invocation: mutmut then runs their
    tests unmutated ("clean tests") once, not once per module. Returns (wall seconds, how it ended)."""
    shown = " ".join(repr(p) for p in patterns) if len(patterns) <= 12 else f"<{len(patterns)} mutants>"
    print(f"\n=== mutmut run {shown}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen([mutmut(), "run", *patterns], cwd=ROOT, env=env())
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the same Ctrl-C reached mutmut, which stops its workers and saves what it has
        code = proc.wait()
        return time.monotonic() - start, "interrupted"
    if code != 0:  # mutmut shows no test output when its test runs fail; this shows it
        print("to see why, run the tests as mutmut runs them: cd mutants && PATH=../.venv/bin:$PATH "
              "MUTANT_UNDER_TEST=stats ../.venv/bin/python -m pytest --rootdir=. -x -n 0", file=sys.stderr)
    return time.monotonic() - start, "done" if code == 0 else f"mutmut exited {code}"


def statuses() -> dict[str, str]:
    """mutant name -> mutmut's status, for every mutant in mutants/ (mutmut results --all)."""
    out = subprocess.run([mutmut(), "results", "--all", "true"], cwd=ROOT, env=env(), capture_output=True,
                         text=True, encoding="utf-8", check=True).stdout
    return dict(m.groups() for m in re.finditer(r"^\s+(\S+): (.+)$", out, flags=re.MULTILINE))


def diff(name: str) -> str:
    out = subprocess.run([mutmut(), "show", name], cwd=ROOT, env=env(), capture_output=True, text=True,
                         encoding="utf-8")
    return (out.stdout + out.stderr).strip()


def natural(name: str) -> tuple:
    """Sort key: function, then mutant number as a number (mutmut_2 before mutmut_10)."""
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def wilson(detected: int, tested: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % interval of a kill rate measured on a random sample (Wilson's, sound near 0 % and 100 %)."""
    p = detected / tested
    centre, half = p + z * z / (2 * tested), z * math.sqrt(p * (1 - p) / tested + z * z / (4 * tested * tested))
    return (centre - half) / (1 + z * z / tested), (centre + half) / (1 + z * z / tested)


def kill_rate(counts: Counter, sampled: bool) -> str:
    tested = sum(counts.values()) - counts["skipped"] - counts["not checked"]
    if not tested:
        return "-"
    detected = sum(counts[s] for s in DETECTED)
    low, high = wilson(detected, tested)
    return f"{100 * detected / tested:.1f}%" + (f" ({100 * low:.0f}-{100 * high:.0f}%)" if sampled else "")


def draw(names: list[str], module: str, size: int, seed: int) -> list[str]:
    """`size` of a module's mutants at random; the same seed draws the same ones while the code is the same,
    and a larger sample holds a smaller one (the first `size` of one shuffle), so its results carry over."""
    names = sorted(names, key=natural)  # whatever order they came in
    random.Random(f"{seed}:{module}").shuffle(names)
    return sorted(names[:size], key=natural)


def table(rows: list[tuple[str, Counter, int]], sampled: bool) -> str:
    header = ("module", "mutants", *(("of",) if sampled else ()), *COLUMNS,
              "kill rate (95% interval)" if sampled else "kill rate")
    lines = [header]
    total = ("all", sum((counts for _, counts, _ in rows), Counter()), sum(of for _, _, of in rows))
    for module, counts, of in [*rows, total] if len(rows) > 1 else rows:
        lines.append((module, str(sum(counts.values())), *((str(of),) if sampled else ()),
                      *(str(counts[c]) for c in COLUMNS), kill_rate(counts, sampled)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
            for line in lines]
    return "\n".join(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="paths as in [tool.mutmut] only_mutate (default: all of them)")
    parser.add_argument("--report-only", action="store_true", help="report the results in mutants/, run nothing")
    parser.add_argument("--sample", type=int, metavar="N", help="test N mutants of each module, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="which N mutants --sample draws (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the survivors go (default {DEFAULT_OUT.name})")
    args = parser.parse_args()
    if args.sample is not None and args.sample < 1:
        sys.exit(f"--sample must be at least 1, got {args.sample}")

    known = configured_modules()
    modules = args.modules or known
    unknown = [m for m in modules if m not in known]
    if unknown:
        sys.exit(f"not in pyproject.toml's [tool.mutmut] only_mutate: {' '.join(unknown)}\n"
                 f"mutmut mutates only these: {' '.join(known)}")

    def names_of(found: dict[str, str], module: str) -> list[str]:
        return sorted((n for n in found if n.startswith(mutant_prefix(module))), key=natural)

    wall, failed, seconds = "-", False, 0.0
    found = statuses() if args.sample or args.report_only else {}
    unmade = [m for m in modules if not names_of(found, m)]
    if args.sample and unmade and not args.report_only:
        # A sample is drawn from the mutants' names, which mutmut writes when it first runs: let it make them
        # (and record which tests call what) with a run of one mutant of each function.
        seconds, ended = run_mutmut([mutant_prefix(m) + "*__mutmut_1" for m in unmade])
        if ended != "done":
            sys.exit(f"mutmut: {ended} before the mutants to draw from were made")
        found = statuses()
    chosen = {m: draw(names_of(found, m), m, args.sample, args.seed) if args.sample else None for m in modules}
    if not args.report_only:
        if args.sample:
            spent, ended = run_mutmut([n for names in chosen.values() for n in names or ()])
        else:
            spent, ended = run_mutmut([mutant_prefix(m) + "*" for m in modules])
        seconds += spent
        wall = f"{seconds / 60:.1f} min" + ("" if ended == "done" else f" ({ended})")
        if ended != "done":
            failed = ended != "interrupted"
            print(f"mutmut: {ended}; reporting what was measured", file=sys.stderr)

    found = statuses()
    rows, gaps = [], []
    for module in modules:
        everyone = names_of(found, module)
        # Drawn again from the names as mutmut left them: a module whose code changed since the last run has
        # new mutants, and its new draw then shows what is still "not checked" (the next run tests it).
        names = draw(everyone, module, args.sample, args.seed) if args.sample else everyone
        if not names:
            continue
        rows.append((module, Counter(found[n] for n in names), len(everyone)))
        # Untested mutants ("not checked": the run was stopped) are counted in the table, not listed.
        gaps += [(n, found[n]) for n in names if found[n] not in (*DETECTED, "skipped", "not checked")]
    if not rows:
        print("no mutation results yet: run `make mutate` (mutants/ holds them)", file=sys.stderr)
        return 1

    sampled = args.sample is not None
    summary = table(rows, sampled) + f"\nmutmut's run took {wall}" * (wall != "-")
    if sampled:
        summary += f"\na random sample of at most {args.sample} mutants per module (--seed {args.seed})"
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with args.out.open("w", encoding="utf-8") as out:
        out.write(f"# mutmut results, {stamp}; kill rate = (killed + timeout) / (mutants - skipped - not checked)\n{summary}\n\n")
        out.write(f"# {len(gaps)} mutants the tests did not kill (`mutmut show NAME` prints one again). mutmut runs\n"
                  "# only the tests that called the function in pytest's own process: one that reaches it only through\n"
                  "# a CLI subprocess may still kill a mutant listed here (docs/mutation.md).\n")
        for name, _ in gaps:
            out.write(f"\n{diff(name)}\n")  # mutmut show's first line: # NAME: STATUS
    print(f"\n{summary}\n\n{len(gaps)} mutants not killed: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/ stays outside the package and uses only its public API: `attnlm` and `attnlm.api`. What else a
script needs is exposed in attnlm.api, so that an internal module can move without breaking a script."""

from __future__ import annotations

import ast
from pathlib import Path

from run_helpers import ROOT

import attnlm
import attnlm.api

# The names each public module offers; `from attnlm import api` is the module attnlm.api itself.
PUBLIC = {"attnlm": {*attnlm.__all__, "api"}, "attnlm.api": set(attnlm.api.__all__)}


def private_uses(path: Path) -> list[str]:
    """`line: what` for every use of attnlm in the script other than its public modules and their names: an
    import of another module (`import attnlm.config`, `from attnlm.config import X`, `from attnlm import
    config`) or an attribute path through one (`attnlm.config.X`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "attnlm" and a.name not in PUBLIC]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "attnlm":
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if a.name not in PUBLIC.get(node.module, ())]
        elif isinstance(node, ast.Attribute):  # attnlm.X, attnlm.api.X
            module = ast.unparse(node.value)
            if module in PUBLIC and node.attr not in PUBLIC[module]:
                found.append(f"{node.lineno}: {module}.{node.attr}")
    return found


def test_scripts_use_only_the_public_api() -> None:
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    assert scripts
    private = [f"{path.relative_to(ROOT)}:{use}" for path in scripts for use in private_uses(path)]
    assert not private, ("scripts may use only attnlm and attnlm.api; expose what else they need in attnlm.api "
                         "(its _HOME):\n" + "\n".join(sorted(set(private))))

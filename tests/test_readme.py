"""The config reference in docs/configuration.md is generated from attnlm/config.py and must not drift from
it; the README shows the two commands a fresh machine needs."""

from __future__ import annotations

import sys

from run_helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from config_reference import table  # noqa: E402


def test_docs_config_reference_is_current() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert table() in reference, ("docs/configuration.md's config reference is stale: paste "
                                  "`python scripts/config_reference.py` into it")


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make train" in readme and "make test" in readme

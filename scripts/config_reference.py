"""Print the config reference table of docs/configuration.md (tests/test_readme.py keeps that file in step with
attnlm/config.py)."""

from __future__ import annotations

from attnlm.api import config_reference


def table() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, doc in config_reference():
        shown = default.replace("|", "\\|").replace("\n", "\\n")
        lines.append(f"| `{key}` | `{shown}` | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

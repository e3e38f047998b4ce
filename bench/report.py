"""Writing a benchmark's section into docs/benchmarks.md, replacing its last run."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, marker: str, body: str) -> None:
    """Put ``marker`` + ``body`` in ``path``, in place of the section of that title."""
    section = f"{marker}\n\n{body.rstrip()}\n\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")

"""What the two fetchers share: their error, the cache folder, and tool lookup with one-line messages."""
from __future__ import annotations

import os
from pathlib import Path


class FetchError(RuntimeError):
    """A failed download, a missing tool, a checksum mismatch, or a folder a fetcher refuses to touch."""


def default_cache() -> Path:
    """$XDG_CACHE_HOME/gendistiller, else ~/.cache/gendistiller."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gendistiller"



def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: the message a FetchError shows."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"

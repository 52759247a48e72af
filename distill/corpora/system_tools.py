"""The programs the corpora run (espeak-ng, sox, apt-get, dpkg-deb), found on PATH or named with their package."""
from __future__ import annotations

import shutil


def require_tool(tool: str, package: str, error: type[Exception]) -> str:
    """The path of `tool`, or `error` naming the Debian package that provides it."""
    path = shutil.which(tool)
    if path is None:
        raise error(f"`{tool}` was not found on PATH; install the `{package}` package "
                    f"(Debian/Ubuntu: sudo apt-get install {package})")
    return path

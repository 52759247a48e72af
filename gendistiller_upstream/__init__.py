"""s3prl upstream plugin for GenDistiller students.

s3prl has no plugin mechanism: its runner and `s3prl.nn.S3PRLUpstream` look an upstream up with
`getattr(s3prl.hub, NAME)`. `register()` sets our entries as attributes of `s3prl.hub` in the calling
process; call it before s3prl looks the name up, in every process (`gendistiller superb` does).

    import gendistiller_upstream
    gendistiller_upstream.register()
    from s3prl.nn import S3PRLUpstream
    upstream = S3PRLUpstream("gendistiller_local", path_or_url="runs/.../step_00001000.pt")
"""
from __future__ import annotations

from typing import Callable

__all__ = ["ENTRIES", "register"]

# Names of the functions in gendistiller_upstream.hubconf that become s3prl upstreams. An explicit list, no discovery.
ENTRIES: tuple[str, ...] = ("gendistiller", "gendistiller_local", "gendistiller_url")


def register() -> list[str]:
    """Adds our entries to `s3prl.hub` (idempotent); returns their names. Also installs the ctc expert's corpus
    modules (PR, SF) where s3prl lacks them (`gendistiller_upstream.ctc_corpus`).

    Raises RuntimeError if s3prl already has a different upstream under one of these names.
    """
    import s3prl.hub as hub

    from gendistiller_upstream import ctc_corpus, hubconf

    ctc_corpus.install()

    for name in ENTRIES:
        entry: Callable = getattr(hubconf, name)
        existing = getattr(hub, name, None)
        ours = getattr(existing, "__module__", None) == hubconf.__name__  # also after a module reload
        if existing is not None and not ours:
            raise RuntimeError(f"s3prl.hub already has an upstream named {name!r} ({existing!r}); "
                               "refusing to replace it")
        setattr(hub, name, entry)
    return list(ENTRIES)

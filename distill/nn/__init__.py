"""Building blocks and the encoders built from them, shared by teachers and students: the wav2vec 2.0 / HuBERT /
WavLM encoder, the Whisper encoder, and the rule that runs long recordings in windows. Models only, no training."""

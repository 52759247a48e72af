"""What every other part reads and writes: audio files and waveform batches, plain-data configs, checkpoint files and
the rule tables that rename weights between formats. Importing it needs numpy alone (the torch-free runtime uses it)."""

"""GenDistiller: layer-by-layer generative distillation of self-supervised speech models."""

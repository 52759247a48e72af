"""How students (and the demo's teacher) are trained: the distillation trainer, its loss, data and run folders, the
teacher's HuBERT-style pretraining with its units, and held-out fidelity."""

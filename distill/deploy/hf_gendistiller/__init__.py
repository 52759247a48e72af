"""The code a GenDistiller exported for transformers carries with its weights (`gendistiller export --to hf`):
`configuration_gendistiller.py` and `modeling_gendistiller.py` are copied verbatim into every export, import only torch
and transformers, and are read by `AutoModel.from_pretrained(folder, trust_remote_code=True)`. tests/test_hf_export.py
checks them against `distill.models.GenDistiller` (same weight names, same hidden states)."""

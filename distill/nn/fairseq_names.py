"""Our encoder's weight names against fairseq's, which the official WavLM checkpoints, fairseq's HuBERT / wav2vec 2.0
and s3prl's `DistillerModel` share: read by the teacher importers, written by teacher pretraining (official WavLM
format) and by the export of the baseline to s3prl."""
from __future__ import annotations

# fairseq -> ours. The CNN is fairseq's Sequential(conv, dropout, norm, GELU); its "layer_norm" mode wraps the norm in
# Sequential(TransposeLast, norm, TransposeLast). Pre-training heads are dropped: the masking embedding, HuBERT's label
# embeddings and projection, wav2vec 2.0's quantiser.
FAIRSEQ_TO_OURS: tuple[tuple[str, str | None], ...] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"layer_norm\.(weight|bias)", r"projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight",
     r"encoder.layers.\1.self_attn.relative_position.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj|grep_linear)\.(weight|bias)",
     r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"mask_emb", None),
    (r"label_embs_concat", None),
    (r"final_proj\..*", None),
    (r"project_q\..*", None),
    (r"quantizer\..*", None),
)

# ours -> fairseq, per CNN mode: where the norm of a CNN block sits.
_CNN_NORM_TO_FAIRSEQ: dict[str, tuple[str, str]] = {
    "default": (r"feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.2.\2"),
    "layer_norm": (r"feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.2.1.\2"),
}
# ours -> fairseq for a plain (non-WavLM) encoder without the projection's LayerNorm, as s3prl's DistillerModel has it.
_OURS_TO_FAIRSEQ: tuple[tuple[str, str], ...] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"projection\.projection\.(weight|bias)", r"post_extract_proj.\1"),
    # Positional conv: weight-normed conv inside Sequential(conv, SamePad, GELU).
    (r"encoder\.pos_conv\.conv\.(weight_g|weight_v|bias)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)
# ours -> the official WavLM checkpoint (s3prl's `WavLM` class): the projection's LayerNorm and the gated relative
# position bias, on top of the plain encoder's names.
OURS_TO_WAVLM_EXTRAS: tuple[tuple[str, str], ...] = (
    (r"projection\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_position\.relative_attention_bias\.weight",
     r"encoder.layers.\1.self_attn.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(grep_linear)\.(weight|bias)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.self_attn.grep_a"),
)


def ours_to_fairseq(extractor_mode: str) -> tuple[tuple[str, str], ...]:
    """The rename table for our plain encoder with a CNN in `extractor_mode` ("default" or "layer_norm")."""
    if extractor_mode not in _CNN_NORM_TO_FAIRSEQ:
        raise ValueError(f"extractor mode {extractor_mode!r} has no fairseq counterpart; "
                         f"expected one of {sorted(_CNN_NORM_TO_FAIRSEQ)}")
    return (_CNN_NORM_TO_FAIRSEQ[extractor_mode],) + _OURS_TO_FAIRSEQ

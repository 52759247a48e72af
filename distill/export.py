"""Export of the DistilHuBERT baseline to s3prl's own `distiller` checkpoint format.

s3prl's `distiller_local` upstream (`s3prl/upstream/distiller/`) reads a dict with
- `Distiller`: the state dict of its `DistillerModel`, and
- `Config`: a dict whose `distiller` section is what `DistillerConfig` reads.
Our `DistilHuBERT` has the same layers under other names; `_DISTILLER_RULES` maps them (the reverse of the
teacher importer's table, plus the prediction heads) and raises on any weight it does not know.
GenDistiller students have no counterpart in s3prl, so only the baseline exports.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from distill.configuration import from_dict
from distill.models import StudentConfig
from distill.teachers.importers import map_state_dict
from distill.models.checkpoint import read_student_checkpoint
from distill.serialization import save_atomically



class ExportError(ValueError):
    """A student that cannot be written in the requested format."""


# ours -> s3prl DistillerModel; first full match wins. s3prl's CNN blocks are Sequential(conv, dropout, norm, GELU),
# with the LayerNorm of "layer_norm" mode wrapped in Sequential(TransposeLast, norm, TransposeLast).
_CNN_NORM_RULES: dict[str, tuple[str, str]] = {
    "default": (r"feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.2.\2"),
    "layer_norm": (r"feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.2.1.\2"),
}
_DISTILLER_RULES: tuple[tuple[str, str], ...] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"projection\.projection\.(weight|bias)", r"post_extract_proj.\1"),
    # Positional conv: weight-normed conv inside Sequential(conv, SamePad, GELU).
    (r"encoder\.pos_conv\.conv\.(weight_g|weight_v|bias)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    # Heads: Sequential(Linear(D, D*K), GELU, SplitLinear) with SplitLinear.weight (K, D, D), .bias (1, 1, K, D).
    (r"heads\.expand\.(weight|bias)", r"output_layer.0.\1"),
    (r"heads\.(weight|bias)", r"output_layer.2.\1"),
)


def distiller_rules(extractor_mode: str) -> tuple[tuple[str, str], ...]:
    """The rename table for a CNN front-end in `extractor_mode` ("default" or "layer_norm")."""
    if extractor_mode not in _CNN_NORM_RULES:
        raise ExportError(f"extractor mode {extractor_mode!r} has no s3prl distiller counterpart; "
                          f"expected one of {sorted(_CNN_NORM_RULES)}")
    return (_CNN_NORM_RULES[extractor_mode],) + _DISTILLER_RULES


def conv_layers_spec(conv_layers: Any) -> str:
    """((512, 10, 5), (512, 3, 2), (512, 3, 2), ...) -> fairseq's "[(512,10,5)] + [(512,3,2)] * 2 + ..."."""
    terms = []
    for layer, run in itertools.groupby(tuple(int(v) for v in layer) for layer in conv_layers):
        count = len(list(run))
        term = f"[({layer[0]},{layer[1]},{layer[2]})]"
        terms.append(term if count == 1 else f"{term} * {count}")
    return " + ".join(terms)


def distiller_config(student: StudentConfig, cosine_weight: float = 1.0) -> dict[str, Any]:
    """The `distiller` section (s3prl's `DistillerConfig` keys) describing a baseline student."""
    geometry = student.geometry_config()
    return {
        "extractor_mode": geometry.extractor_mode,
        "extractor_conv_feature_layers": conv_layers_spec(student.front_end_conv_layers()),
        "extractor_dropout": 0.0,
        "feature_grad_mult": float(student.cnn_grad_mult),
        "conv_pos": geometry.conv_pos,
        "conv_pos_groups": geometry.conv_pos_groups,
        "encoder_layers": student.encoder_layers,
        "encoder_embed_dim": geometry.dim,
        "encoder_ffn_embed_dim": geometry.ffn_dim,
        "encoder_attention_heads": geometry.num_heads,
        "activation_fn": "gelu",
        "layer_norm_first": geometry.layer_norm_first,
        "attention_type": "original",
        # Our layers drop out after attention, inside attention and after the FFN, but not between fc1 and fc2.
        "dropout": float(student.dropout),
        "attention_dropout": float(student.dropout),
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
        "final_dim": geometry.dim,
        "out_layer_type": "expand-last",
        "out_layer_inter_dim": -1,
        "n_tasks": len(student.target_layers),
        "task_emb_type": "expand-last",
        "task_emb_size": 0,
        "layer_emb_size": 0,
        "loss_type": "l1",
        "feat_pen_loss": 0.0,
        "cosine_loss": float(cosine_weight),
        "pred_layer_id": [int(layer) for layer in student.target_layers],
        "init_teacher_conv_layers": bool(student.init_from_teacher),
        "init_teacher_encoder_layers": bool(student.init_from_teacher),
    }


def _check_exportable(student: StudentConfig, source: str) -> None:
    if student.kind != "distilhubert":
        raise ExportError(f"{source}: a {student.kind!r} student cannot be written as an s3prl distiller checkpoint; "
                          "only the DistilHuBERT baseline (student.kind 'distilhubert') has that format. Use the "
                          "checkpoint itself with the s3prl upstream 'gendistiller_local'")
    geometry = student.geometry_config()
    problems = []
    if geometry.conv_bias:
        problems.append("conv_bias=True (s3prl's DistillerModel builds its CNN without biases)")
    if geometry.normalize:
        problems.append("normalize=True (s3prl's DistillerModel does not normalise waveforms)")
    if student.encoder_layers < 1:
        problems.append(f"encoder_layers={student.encoder_layers} (s3prl drops the positional conv without layers)")
    if problems:
        raise ExportError(f"{source}: the baseline's geometry has no s3prl distiller counterpart: {'; '.join(problems)}")


def export_s3prl_distiller(checkpoint_path: str | Path, output_path: str | Path) -> Path:
    """Writes the baseline student in `checkpoint_path` as an s3prl `distiller` checkpoint; returns its path.

    s3prl's `distiller_local` upstream then exposes the same hidden states as our `gendistiller_local` on the
    student checkpoint (per utterance; s3prl's first CNN GroupNorm also sees the padding of a batch). With
    `layer_norm_first` geometries s3prl returns the last layer before the encoder's final LayerNorm.
    """
    checkpoint = read_student_checkpoint(checkpoint_path)
    source = str(checkpoint_path)
    student = from_dict(StudentConfig, checkpoint["config"]["student"], "student")
    _check_exportable(student, source)
    weights = map_state_dict(checkpoint["student"], f"export of {source} to s3prl distiller",
                             distiller_rules(student.geometry_config().extractor_mode))
    cosine_weight = float(checkpoint["config"].get("optim", {}).get("cosine_weight", 1.0))
    exported = {
        "Distiller": {name: tensor.detach().cpu().clone() for name, tensor in weights.items()},
        "Config": {
            "distiller": distiller_config(student, cosine_weight),
            # Provenance only; s3prl reads the `distiller` section alone.
            "gendistiller": {"source": source, "step": int(checkpoint.get("step", 0)),
                             "teacher": dict(checkpoint.get("teacher") or {})},
        },
    }
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(exported, output_path)
    return output_path

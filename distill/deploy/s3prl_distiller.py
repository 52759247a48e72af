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

from distill.io.checkpoint_files import save_atomically
from distill.io.weight_names import map_state_dict
from distill.models import DistilHuBERTConfig, StudentConfig, student_config_from_dict
from distill.models.student_checkpoint import read_student_checkpoint
from distill.nn.fairseq_names import ours_to_fairseq


class ExportError(ValueError):
    """A student that cannot be written in the requested format."""


# Heads, beyond the encoder's fairseq names: Sequential(Linear(D, D*K), GELU, SplitLinear) with SplitLinear.weight
# (K, D, D) and .bias (1, 1, K, D).
_HEAD_RULES: tuple[tuple[str, str], ...] = (
    (r"heads\.expand\.(weight|bias)", r"output_layer.0.\1"),
    (r"heads\.(weight|bias)", r"output_layer.2.\1"),
)


def distiller_rules(extractor_mode: str) -> tuple[tuple[str, str], ...]:
    """Our DistilHuBERT's names -> s3prl's DistillerModel's, for a CNN front-end in `extractor_mode`."""
    try:
        return ours_to_fairseq(extractor_mode) + _HEAD_RULES
    except ValueError as error:
        raise ExportError(f"{error}: no s3prl distiller counterpart") from None


def conv_layers_spec(conv_layers: Any) -> str:
    """((512, 10, 5), (512, 3, 2), (512, 3, 2), ...) -> fairseq's "[(512,10,5)] + [(512,3,2)] * 2 + ..."."""
    terms = []
    for layer, run in itertools.groupby(tuple(int(v) for v in layer) for layer in conv_layers):
        count = len(list(run))
        term = f"[({layer[0]},{layer[1]},{layer[2]})]"
        terms.append(term if count == 1 else f"{term} * {count}")
    return " + ".join(terms)


def distiller_config(student: DistilHuBERTConfig, cosine_weight: float = 1.0) -> dict[str, Any]:
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
    if not isinstance(student, DistilHuBERTConfig):
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
    student = student_config_from_dict(checkpoint["config"]["student"])
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

"""A trained student as a HuggingFace transformers folder: `gendistiller export --to hf CKPT OUT_DIR`.

- DistilHuBERT becomes a plain `HubertModel` (as the Hub's `ntu-spml/distilhubert` is laid out): its CNN, projection
  (no LayerNorm before it: `feat_proj_layer_norm: false`), positional convolution and transformer layers, renamed by
  `_HUBERT_RULES`. transformers' `hidden_states` are then [our layer 0 (after the positional convolution and the
  encoder LayerNorm), transformer layer 1..n]; the prediction heads have no place in a `HubertModel` and stay behind.
- GenDistiller, whose layers come from a loop no transformers class has, becomes a folder of `model_type`
  "gendistiller" whose `auto_map` points at the two files of `distill/deploy/hf_gendistiller/`, copied verbatim:
  `AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)`. Every option the student was trained with is a key of
  its config.json (`gendistiller_hf_config`); the weights keep our names but for the positional convolution's weight
  norm (`_GENDISTILLER_RULES`).

Both folders hold config.json, model.safetensors, preprocessor_config.json (a `Wav2Vec2FeatureExtractor`: 16 kHz,
attention masks, and the waveform normalisation where the student has it), gendistiller_config.yaml (the run's config,
from the checkpoint) and README.md (the model card, `distill.deploy.model_card`). A checkpoint that is not a student
raises a `CheckpointError` naming the file.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from distill.deploy.model_card import CardFacts, run_facts, write_card
from distill.deploy.s3prl_distiller import ExportError
from distill.io.weight_names import map_state_dict
from distill.models import DistilHuBERT, GenDistiller, Student
from distill.models.student_checkpoint import load_student

HF_CODE_DIR = Path(__file__).resolve().parent / "hf_gendistiller"
HF_CODE_FILES = ("configuration_gendistiller.py", "modeling_gendistiller.py")
AUTO_MAP = {"AutoConfig": "configuration_gendistiller.GenDistillerConfig",
            "AutoModel": "modeling_gendistiller.GenDistillerModel"}
CONFIG_FILE = "gendistiller_config.yaml"
# What an export writes; a folder holding anything else is not overwritten.
EXPORTED_FILES = frozenset({"config.json", "model.safetensors", "preprocessor_config.json", "README.md", CONFIG_FILE,
                            *HF_CODE_FILES})
HF_NORMALIZE_EPS = 1e-7  # the variance epsilon of Wav2Vec2FeatureExtractor's normalisation
_WEIGHT_NORM = "encoder.pos_conv_embed.conv.parametrizations.weight.original"  # transformers' HubertModel

# Our DistilHuBERT -> transformers' HubertModel (first full match wins; None: no place in a HubertModel).
_HUBERT_RULES: tuple[tuple[str, str | None], ...] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"projection\.layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"projection\.projection\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.conv\.weight_g", _WEIGHT_NORM + "0"),
    (r"encoder\.pos_conv\.conv\.weight_v", _WEIGHT_NORM + "1"),
    (r"encoder\.pos_conv\.conv\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
     r"encoder.layers.\1.attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"heads\..*", None),  # the prediction heads
    (r"target_(mean|std)", None),  # the heads' target statistics
)

# Our GenDistiller -> the exported modeling code: the same names, but the positional convolution's weight norm is a
# parametrization there (the form transformers saves and loads without renaming).
_GENDISTILLER_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder\.pos_conv\.conv\.weight_g", "encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.conv\.weight_v", "encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"(feature_extractor|projection|encoder|generator|step_embedding|output_projection|output_norm|step_ffn)\..+",
     r"\g<0>"),
    (r"target_(mean|std)", r"\g<0>"),
)

# Where each GenDistillerConfig field goes in the exported config.json; TRAINING_ONLY fields only training reads.
CARRIED_AS: dict[str, tuple[str, ...]] = {
    "target_layers": ("target_layers",),
    "front_end_channels": ("conv_layers", "feature_projection"),
    "feature_layer_norm": ("feature_layer_norm",),
    "target_standardization": ("target_standardization",),  # and the statistics, as buffers in model.safetensors
    "dropout": ("dropout",),
    "generator_layers": ("generator_layers",),
    "share_generator": ("share_generator",),
    "step_embedding": ("step_embedding",),
    "output_projection_groups": ("output_projection_groups",),
    "output_norm": ("output_norm",),
    "generator_repeats": ("generator_repeats",),
    "step_ffn_dims": ("step_ffn_dims",),
    "attention_2d": ("attention_2d",),
    "front_end_state": ("front_end_state",),
    "states_in_teacher_units": ("states_in_teacher_units",),
    "generator_states": ("generator_states",),
    "geometry": (),  # field by field: GEOMETRY_CARRIED_AS
}
TRAINING_ONLY = frozenset({"init_from_teacher", "cnn_grad_mult", "generator_init_layer"})
# The same for the geometry's fields; GEOMETRY_UNUSED are the teacher's, which the student does not build from
# (its layers use plain attention, its own feature_layer_norm decides the LayerNorm before the projection).
GEOMETRY_CARRIED_AS: dict[str, tuple[str, ...]] = {
    "conv_layers": ("conv_layers",), "extractor_mode": ("extractor_mode",), "conv_bias": ("conv_bias",),
    "dim": ("hidden_size",), "ffn_dim": ("intermediate_size",), "num_heads": ("num_attention_heads",),
    "layer_norm_first": ("layer_norm_first",), "conv_pos": ("num_conv_pos_embeddings",),
    "conv_pos_groups": ("num_conv_pos_embedding_groups",), "project_features": ("feature_projection",),
    "normalize": ("normalize_waveform",), "normalize_eps": ("normalize_eps",),
}
GEOMETRY_UNUSED = frozenset({"family", "num_layers", "relative_position", "num_buckets", "max_distance",
                             "gated_relative_position", "projection_layer_norm"})


def _front_end(student: Student) -> dict[str, Any]:
    """The front-end as the student was built: CNN layers, whether a LayerNorm and a Linear follow it."""
    return {"conv_layers": [list(layer) for layer in student.config.front_end_conv_layers()],
            "feature_layer_norm": student.projection.layer_norm is not None,
            "feature_projection": student.projection.projection is not None}


def gendistiller_hf_config(student: GenDistiller) -> dict[str, Any]:
    """The exported config.json's own keys for a (resolved) GenDistiller: every option it was trained with."""
    config, geometry = student.config, student.geometry
    return {
        "target_layers": list(config.target_layers), **_front_end(student),
        "extractor_mode": geometry.extractor_mode, "conv_bias": geometry.conv_bias,
        "hidden_size": geometry.dim, "intermediate_size": geometry.ffn_dim, "num_attention_heads": geometry.num_heads,
        "layer_norm_first": geometry.layer_norm_first, "num_conv_pos_embeddings": geometry.conv_pos,
        "num_conv_pos_embedding_groups": geometry.conv_pos_groups,
        "normalize_waveform": geometry.normalize, "normalize_eps": geometry.normalize_eps,
        "generator_layers": config.generator_layers, "share_generator": config.share_generator,
        "step_embedding": config.step_embedding,
        "output_projection_groups": list(config.output_projection_groups or []),
        "output_norm": bool(config.output_norm), "generator_repeats": list(config.generator_repeats),
        "step_ffn_dims": list(config.step_ffn_dims), "attention_2d": config.attention_2d,  # type: ignore[arg-type]
        "target_standardization": bool(config.target_standardization), "dropout": config.dropout,
        "front_end_state": config.front_end_state, "states_in_teacher_units": config.states_in_teacher_units,
        "generator_states": config.generator_states,
        "architectures": ["GenDistillerModel"], "auto_map": dict(AUTO_MAP),
    }


def hubert_config(student: DistilHuBERT) -> dict[str, Any]:
    """transformers' HubertConfig keys for the baseline's front-end and layers."""
    geometry, front_end = student.geometry, _front_end(student)
    conv = front_end["conv_layers"]
    return {
        "hidden_size": geometry.dim, "num_hidden_layers": student.config.encoder_layers,
        "num_attention_heads": geometry.num_heads, "intermediate_size": geometry.ffn_dim, "hidden_act": "gelu",
        "hidden_dropout": student.config.dropout, "attention_dropout": student.config.dropout,
        "activation_dropout": 0.0, "feat_proj_dropout": 0.0, "layerdrop": 0.0, "layer_norm_eps": 1e-5,
        "feat_extract_norm": {"default": "group", "layer_norm": "layer"}[geometry.extractor_mode],
        "feat_extract_activation": "gelu", "conv_dim": [c for c, _, _ in conv], "conv_kernel": [k for _, k, _ in conv],
        "conv_stride": [s for _, _, s in conv], "conv_bias": geometry.conv_bias,
        "num_conv_pos_embeddings": geometry.conv_pos, "num_conv_pos_embedding_groups": geometry.conv_pos_groups,
        "conv_pos_batch_norm": False, "do_stable_layer_norm": geometry.layer_norm_first,
        "feat_proj_layer_norm": front_end["feature_layer_norm"], "architectures": ["HubertModel"],
    }


def export_hf(checkpoint: str | Path, out_dir: str | Path, license: str = "other") -> Path:
    """Writes the student of `checkpoint` as a transformers folder `out_dir` (see the module's docstring); returns it.
    `license`: the Hub's licence id for the card's header."""
    out = Path(out_dir)
    _check_output(out)
    _require_transformers()
    student, saved = load_student(checkpoint)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if isinstance(student, DistilHuBERT):
        exported_parameters = _write_hubert(student, partial)
        _write_preprocessor(partial, normalize=student.geometry.normalize)
    else:
        assert isinstance(student, GenDistiller), type(student)
        exported_parameters = _write_gendistiller(student, partial)
        _write_preprocessor(partial, normalize=False)  # the model normalises (normalize_waveform) with its own epsilon
    (partial / CONFIG_FILE).write_text(yaml.safe_dump(_plain(saved["config"]), sort_keys=False))
    facts = run_facts(Path(checkpoint), saved, sum(p.numel() for p in student.parameters()), exported_parameters)
    write_card(partial / "README.md", facts, _card_specifics(student), license)
    _replace(out, partial)
    return out


def _require_transformers() -> None:
    try:
        import safetensors  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise ImportError(f"an export to transformers needs transformers and safetensors ({error}): "
                          "pip install 'transformers<5' safetensors") from error


def _write_hubert(student: DistilHuBERT, folder: Path) -> int:
    """config.json + model.safetensors of the HubertModel; returns its parameter count."""
    from transformers import HubertConfig, HubertModel

    with torch.random.fork_rng():
        torch.manual_seed(0)  # masked_spec_embed: fine-tuning's masking embedding, not the student's, at HF's init
        model = HubertModel(HubertConfig(**hubert_config(student))).eval()
    weights = map_state_dict(student.state_dict(), "export to HubertModel", _HUBERT_RULES)
    if student.projection.projection is None:  # equal widths and no Linear: HubertModel's is the identity
        dim = student.geometry.dim
        weights.update({"feature_projection.projection.weight": torch.eye(dim),
                        "feature_projection.projection.bias": torch.zeros(dim)})
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {"masked_spec_embed"}:
        raise ExportError(f"the baseline's weights do not fit transformers' HubertModel: missing "
                          f"{result.missing_keys[:6]}, unexpected {result.unexpected_keys[:6]}")
    model.save_pretrained(folder, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def _write_gendistiller(student: GenDistiller, folder: Path) -> int:
    """config.json + model.safetensors + the two code files; returns the parameter count."""
    from distill.deploy.hf_gendistiller.configuration_gendistiller import GenDistillerConfig as HFConfig
    from distill.deploy.hf_gendistiller.modeling_gendistiller import GenDistillerModel

    model = GenDistillerModel(HFConfig(**gendistiller_hf_config(student))).eval()
    weights = map_state_dict(student.state_dict(), "export to GenDistillerModel", _GENDISTILLER_RULES)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ExportError(f"the student's weights do not fit the exported GenDistillerModel: {error}") from None
    model.save_pretrained(folder, safe_serialization=True)
    for name in HF_CODE_FILES:
        shutil.copyfile(HF_CODE_DIR / name, folder / name)
    return sum(p.numel() for p in model.parameters())


def _write_preprocessor(folder: Path, normalize: bool) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=normalize,
                             return_attention_mask=True).save_pretrained(folder)


def hidden_state_rows(student: Student) -> list[tuple[str, str]]:
    """(transformers' hidden_states index, what it is) for the exported model."""
    layer0 = ("after the positional convolution" + ("" if student.geometry.layer_norm_first
                                                     else " and the encoder LayerNorm"))
    if isinstance(student, DistilHuBERT):
        rows = [("0", f"front-end output {layer0}; the s3prl upstream's state 0 is the projection before it, "
                      "which a HubertModel does not return")]
        rows += [(str(i), f"transformer layer {i} (the s3prl upstream's state {i})")
                 for i in range(1, student.config.encoder_layers + 1)]
        return rows
    standardised = student.config.target_standardization and not student.config.states_in_teacher_units
    units = ", standardised per dimension (the teacher's mean and standard deviation taken out)" if standardised else ""

    def what(name: str) -> str:
        if name == "front_end":
            return "projected CNN output, before the positional convolution"
        if name == "h0":
            return f"h0: front-end output {layer0}"
        return f"generated teacher layer {name.rsplit('_', 1)[1]}{units}"

    return [(str(index), f"{what(name)} (the s3prl upstream's state {index})")
            for index, name in enumerate(student.state_names())]


def _card_specifics(student: Student) -> CardFacts:
    """What the card says that depends on the student's kind."""
    kind = student.config.kind
    if isinstance(student, DistilHuBERT):
        first = student.config.encoder_layers + 1
        heads = ", ".join(f"{first + i} (teacher layer {layer})"
                          for i, layer in enumerate(student.config.target_layers))
        notes = [f"The prediction heads (the s3prl upstream's states {heads}) are not exported: a HubertModel has no "
                 "place for them. `gendistiller export --to s3prl-distiller` or `--to onnx` keeps them."]
        padding = ("transformers' HubertModel normalises its first CNN layer (GroupNorm) over the whole padded input "
                   "and `attention_mask` does not reach the CNN: in a padded batch every utterance shorter than the "
                   "longest gets other features than alone. The student was trained on each utterance alone; run "
                   "one utterance per call for its features (what the tests compare)."
                   if student.geometry.extractor_mode == "default" else
                   "Pass the feature extractor's `attention_mask`: a padded batch then gives each utterance what it "
                   "gets alone (its CNN normalises each frame, not the whole input).")
        if student.geometry.normalize and abs(student.geometry.normalize_eps - HF_NORMALIZE_EPS) > 0:
            notes.append(f"The student normalised waveforms with variance epsilon {student.geometry.normalize_eps:g}; "
                         f"Wav2Vec2FeatureExtractor uses {HF_NORMALIZE_EPS:g}, so features differ slightly.")
        return CardFacts(kind, "HubertModel", hidden_state_rows(student), padding, notes, False,
                         fidelity_note="Its target layers are the prediction heads', which this folder leaves out.",
                         downstream_note="superb-sweep scores DistilHuBERT on its last transformer layer (SUPERB's "
                                         "`-s paper`): this model's `last_hidden_state`.")
    padding = ("Pass the feature extractor's `attention_mask`: a padded batch then gives each utterance exactly what "
               "it gets alone (the CNN's normalisation and the attention use each utterance's valid part only); "
               "padded frames are zero.")
    return CardFacts(kind, "GenDistillerModel", hidden_state_rows(student), padding, [], True,
                     downstream_note="superb-sweep gives s3prl every hidden state for its learned weighted sum.")


def _check_output(out: Path) -> None:
    if out.is_file():
        raise ExportError(f"cannot write {out}: it is a file; an HF export is a folder")
    if out.is_dir():
        foreign = sorted(path.name for path in out.iterdir() if path.name not in EXPORTED_FILES)
        if foreign:
            raise ExportError(f"cannot write {out}: it holds files an export does not write "
                              f"({', '.join(foreign[:4])}); choose a new or empty folder")


def _replace(out: Path, partial: Path) -> None:
    """Moves the finished export into place (an interrupted export leaves only the hidden .partial folder)."""
    if out.is_dir():
        for name in EXPORTED_FILES:
            (out / name).unlink(missing_ok=True)
        out.rmdir()
    partial.rename(out)


def _plain(value: Any) -> Any:
    """Tuples as lists, for YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


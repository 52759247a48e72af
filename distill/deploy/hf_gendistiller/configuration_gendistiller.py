"""GenDistiller's configuration for transformers: every option of a trained student, as concrete values.

GenDistiller distils a self-supervised speech model (WavLM, HuBERT, wav2vec 2.0, a Whisper encoder) into a student
that generates the teacher's target layers one after another with one shared generator block. This file travels with
the weights of a student exported by `gendistiller export --to hf`; it needs torch and transformers only.
"""
from transformers import PretrainedConfig

# The wav2vec 2.0 / HuBERT / WavLM CNN: 400-sample window, 320-sample hop at 16 kHz.
DEFAULT_CONV_LAYERS = [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2


class GenDistillerConfig(PretrainedConfig):
    """The defaults are the Base GenDistiller of a post-LN 768-wide teacher (layers 4, 8, 12)."""

    model_type = "gendistiller"

    def __init__(
        self,
        target_layers=(4, 8, 12),  # the teacher layers generated, in order: hidden_states[1:]
        conv_layers=DEFAULT_CONV_LAYERS,  # (channels, kernel, stride) of each CNN layer
        extractor_mode="default",  # "default": GroupNorm over time in the first CNN layer; "layer_norm": in every one
        conv_bias=False,  # biases in the CNN's convolutions
        feature_layer_norm=True,  # LayerNorm over the CNN's channels before the projection
        feature_projection=True,  # a Linear from the CNN's channels to hidden_size (False: equal widths, none)
        hidden_size=768,
        intermediate_size=3072,  # feed-forward width of the generator's transformer layers
        num_attention_heads=12,
        layer_norm_first=False,  # pre-LN transformer layers (no encoder LayerNorm on hidden_states[0])
        num_conv_pos_embeddings=128,  # kernel of the positional convolution
        num_conv_pos_embedding_groups=16,
        normalize_waveform=False,  # each utterance normalised to zero mean, unit variance over its valid samples
        normalize_eps=1e-5,  # variance epsilon of that normalisation
        generator_layers=1,  # transformer layers in the generator block G
        share_generator=True,  # one G for every step (False: one per generated layer)
        step_embedding=True,  # a learned embedding of the step added to the history
        output_projection_groups=(0, -1, -1),  # the output projection each step uses (-1: none)
        output_norm=True,  # a LayerNorm per step on its output
        generator_repeats=(),  # times G runs at each step (empty: once each)
        step_ffn_dims=(),  # width of each step's own feed-forward block after G (0 or empty: none)
        attention_2d=False,  # step k attends over the frames of every earlier state, not only the last
        target_standardization=False,  # steps predict standardised states; target_mean / target_std undo it
        dropout=0.0,  # dropout inside the transformer layers (training only)
        front_end_state=False,  # hidden_states begin with the projected CNN output, before the positional convolution
        # (True), or with the CNN output through the projection's Linear alone, without the LayerNorm ("unnormalized")
        states_in_teacher_units=True,  # generated states in the teacher's units (False: standardised, as predicted)
        generator_states=False,  # each generated state follows its step's update (G's output before the residual)
        **kwargs,
    ):
        steps = len(target_layers)
        for name, values in (("output_projection_groups", output_projection_groups),
                             ("generator_repeats", generator_repeats), ("step_ffn_dims", step_ffn_dims)):
            if values and len(values) != steps:
                raise ValueError(f"{name} must give one value for each of the {steps} target layers, "
                                 f"got {list(values)}")
        if extractor_mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got {extractor_mode!r}")
        self.target_layers = [int(layer) for layer in target_layers]
        self.conv_layers = [[int(value) for value in layer] for layer in conv_layers]
        self.extractor_mode = extractor_mode
        self.conv_bias = bool(conv_bias)
        self.feature_layer_norm = bool(feature_layer_norm)
        self.feature_projection = bool(feature_projection)
        self.hidden_size = int(hidden_size)
        self.intermediate_size = int(intermediate_size)
        self.num_attention_heads = int(num_attention_heads)
        self.layer_norm_first = bool(layer_norm_first)
        self.num_conv_pos_embeddings = int(num_conv_pos_embeddings)
        self.num_conv_pos_embedding_groups = int(num_conv_pos_embedding_groups)
        self.normalize_waveform = bool(normalize_waveform)
        self.normalize_eps = float(normalize_eps)
        self.generator_layers = int(generator_layers)
        self.share_generator = bool(share_generator)
        self.step_embedding = bool(step_embedding)
        self.output_projection_groups = [int(group) for group in output_projection_groups]
        self.output_norm = bool(output_norm)
        self.generator_repeats = [int(count) for count in generator_repeats]
        self.step_ffn_dims = [int(size) for size in step_ffn_dims]
        self.attention_2d = bool(attention_2d)
        self.target_standardization = bool(target_standardization)
        self.dropout = float(dropout)
        if front_end_state not in (True, False, "unnormalized"):
            raise ValueError(f"front_end_state must be True, False or 'unnormalized', got {front_end_state!r}")
        self.front_end_state = front_end_state
        self.states_in_teacher_units = bool(states_in_teacher_units)
        self.generator_states = bool(generator_states)
        super().__init__(**kwargs)

"""Our implementation of the Whisper audio encoder (openai/whisper `model.py`, transformers `WhisperEncoder`): 16 kHz
waveforms in, every hidden state out. The importers (`distill/teachers/openai_whisper_format.py`,
`huggingface_format.py`, `ctranslate2_format.py`) fill it from openai-whisper checkpoints, HuggingFace folders and
CTranslate2 (faster-whisper) `model.bin` files.

Front-end (`LogMelSpectrogram`), exactly as Whisper: 400-point STFT every 160 samples (Hann window, centred with
reflect padding), power spectrum with the last frame dropped, Slaney mel filters to 8 kHz, log10 clamped at 1e-10,
clamped again to (max - 8) with the max over the whole spectrogram, then (x + 4) / 4. `samples // 160` mel frames.

Encoder (`AudioEncoder`): conv1 (kernel 3, padding 1) + GELU, conv2 (kernel 3, stride 2, padding 1) + GELU, so one
frame per 320 samples and (mel frames + 1) // 2 frames; plus the checkpoint's positional table; pre-LN transformer
layers (`components.EncoderLayer`, key projection without bias); a final LayerNorm (openai's `ln_post`).
hidden_states = [conv stem + positions] + each layer's output, the last one after the final LayerNorm: what
transformers' `WhisperEncoder(output_hidden_states=True)` returns (layers + 1 tensors).

Whisper was trained on 30 s windows (`SAMPLES_PER_WINDOW`, 3,000 mel frames, its n_ctx = 1,500 positions). Two modes
(`WhisperEncoderModel.forward(..., pad_to_30s)`):
- per utterance (default): the log-mel of each utterance alone, the encoder over its own frames only (a padded batch
  runs with a key padding mask, so each utterance gets what it gets alone);
- `pad_to_30s`: what Whisper computes: the waveform zero-padded to 30 s before the log-mel, all 1,500 frames encoded,
  then cut to the utterance's valid frames.
Either way an utterance has (samples // 160 + 1) // 2 valid frames (`whisper_frames`). A recording longer than 30 s
has one log-mel over the whole recording (padded to a multiple of 30 s in `pad_to_30s` mode, as openai's
`transcribe` pads it), cut into consecutive 3,000-frame windows (the last one shorter in per-utterance mode); each
window is encoded on its own and the windows' frames are concatenated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.nn.components import EncoderLayer, build_encoder_layer, valid_mask

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms: one mel frame per 160 samples
SAMPLES_PER_WINDOW = 480_000  # 30 s: the feature extractor pads every input to this (2 * n_ctx * HOP_LENGTH)
DOWNSAMPLE_RATE = 2 * HOP_LENGTH  # conv2's stride 2: one encoder frame per 320 samples


@dataclass
class WhisperEncoderConfig:
    n_mels: int = 80  # openai dims.n_mels / HF num_mel_bins (128 for large-v3)
    n_ctx: int = 1500  # dims.n_audio_ctx / max_source_positions: rows of the positional table (30 s)
    dim: int = 512  # dims.n_audio_state / d_model
    num_heads: int = 8  # dims.n_audio_head / encoder_attention_heads
    num_layers: int = 6  # dims.n_audio_layer / encoder_layers
    ffn_dim: int = 2048  # 4 * n_audio_state in openai-whisper / encoder_ffn_dim

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Whisper encoder config: {name} must be a positive integer, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"Whisper encoder config: width {self.dim} is not divisible by {self.num_heads} heads")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def whisper_frames(samples: Tensor) -> Tensor:
    """Encoder frames of an utterance of `samples` samples: samples // 160 mel frames, (that + 1) // 2 after conv2."""
    return (torch.div(samples, HOP_LENGTH, rounding_mode="floor") + 1) // 2


def mel_filters(n_mels: int) -> Tensor:
    """Whisper's (201, n_mels) Slaney-normalised, Slaney-scale mel filter bank from 0 to 8 kHz (librosa's defaults,
    which openai-whisper ships in `mel_filters.npz` and transformers' `WhisperFeatureExtractor` recomputes)."""
    import torchaudio

    return torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, 8000.0, n_mels, SAMPLE_RATE, norm="slaney",
                                                 mel_scale="slaney")


class LogMelSpectrogram(nn.Module):
    """One waveform (samples,) -> Whisper's normalised log-mel spectrogram (n_mels, samples // 160)."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.n_mels = n_mels
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("filters", mel_filters(n_mels), persistent=False)  # (201, n_mels)

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.ndim != 1:
            raise ValueError(f"expected one waveform of shape (samples,), got {tuple(waveform.shape)}")
        stft = torch.stft(waveform.float(), N_FFT, HOP_LENGTH, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = stft[:, :-1].abs() ** 2  # Whisper drops the last frame: samples // 160 frames
        log_spec = (self.filters.T @ power).clamp(min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0


class AudioEncoder(nn.Module):
    """Log-mel (B, n_mels, T) + mel lengths -> hidden states 0..layers as (B, frames, dim), and frame lengths.

    Padded mel frames are zeroed before each convolution, so an utterance's valid frames see zeros past its end, as
    the convolutions' own padding gives it alone; attention masks padded keys. Padded output frames are zeros.
    """

    def __init__(self, config: WhisperEncoderConfig):
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.n_mels, config.dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.dim, config.dim, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(config.n_ctx, config.dim))  # filled from the checkpoint
        self.layers = nn.ModuleList(
            build_encoder_layer(config.dim, config.ffn_dim, config.num_heads, layer_norm_first=True, key_bias=False)
            for _ in range(config.num_layers))
        self.layer_norm = nn.LayerNorm(config.dim)  # openai's ln_post

    def forward(self, mel: Tensor, mel_lengths: Tensor, num_layers: Optional[int] = None
                ) -> tuple[list[Tensor], Tensor]:
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"expected a log-mel batch of shape (batch, {self.config.n_mels}, frames), "
                             f"got {tuple(mel.shape)}")
        mel_valid = valid_mask(mel_lengths, mel.shape[-1])[:, None, :].to(mel.dtype)
        x = F.gelu(self.conv1(mel * mel_valid)) * mel_valid
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        lengths = (mel_lengths + 1) // 2
        if x.shape[1] > self.config.n_ctx:
            raise ValueError(f"{x.shape[1]} frames exceed the {self.config.n_ctx} positions of the Whisper encoder "
                             f"({self.config.n_ctx * 2} mel frames); cut the input into windows")
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        valid = valid_mask(lengths, x.shape[1])
        key_padding = None if bool(valid.all()) else ~valid
        hidden_states = [x]
        layers: list[EncoderLayer] = list(self.layers if num_layers is None else self.layers[:num_layers])
        for layer in layers:
            x, _ = layer(x, key_padding)
            hidden_states.append(x)
        if len(layers) == len(self.layers):
            hidden_states[-1] = self.layer_norm(hidden_states[-1])
        keep = valid[..., None].to(x.dtype)
        return [state * keep for state in hidden_states], lengths


class WhisperEncoderModel(nn.Module):
    """Waveforms (B, samples) + sample lengths -> every hidden state (B, frames, dim) and frame lengths; see the module
    docstring for the two modes and the 30 s windows."""

    def __init__(self, config: WhisperEncoderConfig):
        super().__init__()
        self.config = config
        self.log_mel = LogMelSpectrogram(config.n_mels)
        self.encoder = AudioEncoder(config)
        # One window fills the positional table: 3,000 mel frames, 30 s, for every released Whisper model.
        self.mel_frames_per_window = 2 * config.n_ctx
        self.window_samples = self.mel_frames_per_window * HOP_LENGTH

    def windows(self, waveform: Tensor, pad_to_30s: bool) -> list[Tensor]:
        """One utterance -> its consecutive log-mel windows (n_mels, <= 3,000 frames), samples // 160 frames in all."""
        samples = waveform.shape[0]
        if pad_to_30s:
            padded = -(-samples // self.window_samples) * self.window_samples
            waveform = F.pad(waveform, (0, padded - samples))
        mel = self.log_mel(waveform)
        step = self.mel_frames_per_window
        return [mel[:, start: start + step] for start in range(0, mel.shape[1], step)]

    def forward(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None,
                pad_to_30s: bool = False) -> tuple[list[Tensor], Tensor]:
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
        per_utterance = [self.windows(wav[:length], pad_to_30s) for wav, length in zip(waveforms, lengths.tolist())]
        windows = [window for utterance in per_utterance for window in utterance]
        mel_lengths = torch.tensor([window.shape[1] for window in windows], device=waveforms.device)
        mel = nn.utils.rnn.pad_sequence([window.T for window in windows], batch_first=True).transpose(1, 2)
        states, window_frames = self.encoder(mel, mel_lengths, num_layers)
        frame_lengths = whisper_frames(lengths)
        # Per utterance: its windows' valid frames, concatenated and cut to its own frame count (a last window padded to
        # 30 s has more), then zero-padded to the batch's longest.
        spans, first = [], 0
        for utterance in per_utterance:
            spans.append(range(first, first + len(utterance)))
            first += len(utterance)
        out = []
        for state in states:
            utterances = [torch.cat([state[k, : int(window_frames[k])] for k in span])[: int(count)]
                          for span, count in zip(spans, frame_lengths)]
            out.append(nn.utils.rnn.pad_sequence(utterances, batch_first=True))
        return out, frame_lengths

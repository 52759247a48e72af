import sys
from pathlib import Path

import pytest
import torch

from distill.teachers.tiny import write_wavlm_checkpoint

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_wavlm_path(tmp_path_factory) -> Path:
    return write_wavlm_checkpoint(tmp_path_factory.mktemp("teacher") / "tiny_wavlm.pt")


def random_waveforms(lengths, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=generator) for n in lengths]

import contextlib
import signal
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


def write_tone_corpus(root: Path, num_files: int = 16, seed: int = 0) -> Path:
    """Speech-like enough for training tests: harmonic tones with gliding pitch and noise, 1-3 s, 16 kHz."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num_files):
        n = int(rng.integers(16000, 48000))
        t = np.arange(n) / 16000
        f0 = rng.uniform(90, 250) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(n)
        soundfile.write(root / f"utt{i:03d}.flac", wav.astype("float32"), 16000)
    return root


def trained_student(tmp_path_factory, teacher: Path, kind: str) -> Path:
    """A student checkpoint written by the real trainer (2 steps), once per session and kind.

    Kept on disk under the session's base temp folder, so every test module that asks gets the same file.
    """
    root = tmp_path_factory.getbasetemp() / "trained_students"
    done = root / f"{kind}.path"
    if done.is_file():
        return Path(done.read_text())
    from distill.training.trainer import load_config, train

    corpus = write_tone_corpus(root / "corpus", num_files=4)
    config = load_config(f"tiny_{kind}", [f"teacher={teacher}", f"data.train={corpus}", f"run.output_dir={root / kind}",
                                          "optim.total_steps=2", "run.progress=false"])
    with torch.random.fork_rng():
        path = train(config)
    done.write_text(str(path))
    return path


def killed_after_first_checkpoint(monkeypatch, run) -> None:
    """Runs `run()` with the process 'killed' (KeyboardInterrupt) right after its first checkpoint is written."""
    import distill.training.runs

    real_save = distill.training.runs.save_atomically

    def save_then_crash(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(distill.training.runs, "save_atomically", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.undo()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny tensors on a 2-core machine: a second OpenMP thread mostly waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def gendistiller_ckpt(tmp_path_factory, tiny_wavlm_path) -> Path:
    return trained_student(tmp_path_factory, tiny_wavlm_path, "gendistiller")


@pytest.fixture(scope="session")
def distilhubert_ckpt(tmp_path_factory, tiny_wavlm_path) -> Path:
    return trained_student(tmp_path_factory, tiny_wavlm_path, "distilhubert")


class Hang(BaseException):
    """A block that ran past its time limit (BaseException: no error boundary takes it for an expected error)."""


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fails the block with Hang after `seconds` (SIGALRM); a hang inside C code, where Python cannot raise, ends the
    test process 30 s later with every thread's traceback (faulthandler): never a silent hang."""
    import faulthandler

    def fail(signum, frame):
        raise Hang(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, fail)
    try:
        faulthandler.dump_traceback_later(seconds + 30, exit=True, file=sys.__stderr__)
        signal.alarm(seconds)
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_nan_audio(path: Path, samples: int = 8000, where: slice = slice(None)) -> Path:
    """A float WAV whose samples at `where` are NaN (all of them by default): what a broken converter leaves."""
    import numpy as np
    import soundfile

    wav = 0.1 * np.random.default_rng(1).standard_normal(samples).astype("float32")
    wav[where] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wav, 16000, subtype="FLOAT")
    return path

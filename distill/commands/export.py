"""`gendistiller export --to s3prl-distiller|onnx|hf CKPT OUT`: a trained student in another format.

s3prl-distiller: the baseline as s3prl's own DistilHuBERT checkpoint (`-u distiller_local`). onnx: either student as
an ONNX graph for onnxruntime (`distill.deploy.runtime.OnnxStudent`, `gendistiller embed`), optionally quantized. hf:
either student as a transformers folder with a model card (`distill.deploy.hf_export`). Errors (a file that is not a
student checkpoint, a student the format cannot hold, an output that cannot be written) end as the CLI's one-line
error, exit status 2.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from distill.deploy.hf_export import export_hf
from distill.deploy.onnx_export import QUANTIZATIONS, export_onnx
from distill.deploy.s3prl_distiller import export_s3prl_distiller
from distill.io.audio import audio_files, read_audio

FORMATS = ("s3prl-distiller", "onnx", "hf")
CALIBRATION_FILES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, choices=FORMATS,
                        help="s3prl-distiller: s3prl's DistilHuBERT checkpoint (-u distiller_local); onnx: an ONNX "
                             "graph; hf: a transformers folder with a model card (DistilHuBERT: HubertModel; "
                             "GenDistiller: AutoModel with trust_remote_code=True)")
    parser.add_argument("--quantize", choices=tuple(QUANTIZATIONS),
                        help="onnx only: int8 = int8 linear layers and CNN convolutions, a scale per frame (recommended); "
                             "int8-linear = int8 linear layers only, convolutions fp32; int8-cnn = int8 linear layers and "
                             "static int8 CNN convolutions: fastest, but loses quiet frames "
                             "(BENCHMARKS.md, 'Deployment: ONNX and int8')")
    parser.add_argument("--calibration", type=Path,
                        help=f"--quantize int8-cnn: a folder of 16 kHz audio for the CNN's activation ranges "
                             f"({CALIBRATION_FILES} files spread over it are used)")
    parser.add_argument("--license", default="other", help="hf only: the Hub licence id in the model card's header "
                                                             "(set it from your teacher's and data's licences)")
    parser.add_argument("checkpoint", help="a student checkpoint written by `gendistiller distill`")
    parser.add_argument("output", help="file to write (e.g. distilhubert.ckpt or student.onnx), or a folder for hf")


def run(args: argparse.Namespace) -> int:
    if args.to != "onnx" and (args.quantize or args.calibration):
        raise ValueError("--quantize and --calibration apply to --to onnx only")
    if args.to == "hf":
        return _export_hf(args)
    if args.license != "other":
        raise ValueError("--license applies to --to hf only")
    if (args.quantize == "int8-cnn") != (args.calibration is not None):
        raise ValueError("--quantize int8-cnn needs --calibration DIR (audio for the CNN's ranges), and only it uses one")
    if args.to == "onnx":
        path = _export_onnx(args)
        what = f"{args.quantize}: {QUANTIZATIONS[args.quantize]}" if args.quantize else "fp32"
        print(f"[export] wrote {path} (onnx, {what}); run it with distill.deploy.runtime.OnnxStudent or "
              f"`gendistiller embed --model {path} AUDIO...`")
    else:
        path = export_s3prl_distiller(args.checkpoint, args.output)
        print(f"[export] wrote {path} ({args.to}); use it with s3prl: -u distiller_local -k {path}")
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    folder = export_hf(args.checkpoint, args.output, args.license)
    print(f"[export] wrote {folder} (transformers folder with a model card) in {time.perf_counter() - started:.1f} s; "
          f"how to load it: {folder / 'README.md'}")
    return 0


def _export_onnx(args: argparse.Namespace) -> Path:
    calibration = [read_audio(path) for path in audio_files([args.calibration], CALIBRATION_FILES)] if args.calibration else []
    return export_onnx(args.checkpoint, args.output, args.quantize, calibration)

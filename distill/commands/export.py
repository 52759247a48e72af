"""`gendistiller export --to s3prl-distiller|onnx CKPT OUT`: a trained student in another format.

s3prl-distiller: the baseline as s3prl's own DistilHuBERT checkpoint (`-u distiller_local`). onnx: either student as
an ONNX graph for onnxruntime (`distill.deploy.OnnxStudent`, `gendistiller embed`), optionally quantized.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.export import ExportError, export_s3prl_distiller
from distill.serialization import CheckpointError

FORMATS = ("s3prl-distiller", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, choices=FORMATS,
                        help="s3prl-distiller: s3prl's DistilHuBERT checkpoint (-u distiller_local); onnx: an ONNX graph")
    parser.add_argument("--quantize", choices=("int8", "int8-cnn"),
                        help="onnx only: int8 = dynamic int8 linear layers; int8-cnn = also static int8 convolutions")
    parser.add_argument("--calibration", type=Path,
                        help="onnx int8-cnn: a folder of 16 kHz audio for the CNN's activation ranges (8 files are used)")
    parser.add_argument("checkpoint", help="a student checkpoint written by `gendistiller distill`")
    parser.add_argument("output", help="file to write (e.g. distilhubert.ckpt or student.onnx)")


def run(args: argparse.Namespace) -> int:
    if args.to != "onnx" and (args.quantize or args.calibration):
        raise ValueError("--quantize and --calibration apply to --to onnx only")
    try:
        if args.to == "onnx":
            path = _export_onnx(args)
            print(f"[export] wrote {path} (onnx{', ' + args.quantize if args.quantize else ''}); run it with "
                  f"distill.deploy.OnnxStudent or `gendistiller embed --model {path} AUDIO...`")
        else:
            path = export_s3prl_distiller(args.checkpoint, args.output)
            print(f"[export] wrote {path} ({args.to}); use it with s3prl: -u distiller_local -k {path}")
    except (ExportError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _export_onnx(args: argparse.Namespace) -> Path:
    from distill.audio import read_audio
    from distill.fidelity import audio_files
    from distill.onnx_export import export_onnx

    calibration = [read_audio(path) for path in audio_files([args.calibration], limit=8)] if args.calibration else []
    return export_onnx(args.checkpoint, args.output, args.quantize, calibration)

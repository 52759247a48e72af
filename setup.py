from setuptools import find_packages, setup

setup(
    name="gendistiller",
    version="0.1.0",
    description="Distil self-supervised speech models into students that generate the teacher's layers "
    "autoregressively, with an s3prl upstream plugin for SUPERB.",
    packages=find_packages(include=["distill", "distill.*", "gendistiller_upstream", "gendistiller_upstream.*"]),
    package_data={"distill": ["configs/*.yaml"]},  # superb_recipes/ is read from the source tree (editable install)
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.8",
        "torchaudio>=2.8",
        "numpy",
        "pyyaml",
        "tqdm",
        "soundfile",
        "tensorboardX",
    ],
    extras_require={"s3prl": ["s3prl==0.4.18"], "fairseq": ["fairseq-fixed==0.12.3.1"], "pretrain": ["scikit-learn"],
                    "onnx": ["onnx", "onnxruntime"]},
    entry_points={"console_scripts": ["gendistiller=distill.cli:main"]},
)

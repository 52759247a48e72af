"""A trained student in other formats: s3prl's DistilHuBERT checkpoint, ONNX (fp32 and int8), transformers folders
with a model card (`hf_export`), and the torch-free runtime that runs an exported graph (`from distill.deploy import
OnnxStudent`, numpy and onnxruntime only)."""
from distill.deploy.runtime import DeployError, OnnxOutput, OnnxStudent

__all__ = ["OnnxStudent", "OnnxOutput", "DeployError"]

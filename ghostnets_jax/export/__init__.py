"""Deployment: ONNX export verified with onnxruntime, and Ascend through MindSpore (MINDIR).

``python -m ghostnets_jax.export {onnx,mindspore,lite} --help`` for the command line.
"""
from ghostnets_jax.export.onnx import ExportError, export_onnx, jax_reference, verify_onnx

__all__ = ['ExportError', 'export_onnx', 'jax_reference', 'verify_onnx']

"""Deployment: ONNX export verified with onnxruntime, Ascend through MindSpore (MINDIR), MNN.

``python -m ghostnets_jax.export {onnx,mindspore,lite,mnn} --help`` for the command line.
"""
from ghostnets_jax.export.onnx import ExportError, export_onnx, jax_reference, verify_onnx

__all__ = ['ExportError', 'export_onnx', 'jax_reference', 'verify_onnx']

"""Export a saved model (ONNX first, TorchScript too) and run ONNX exports without torch.

``fmnist.export.exporters`` needs torch; ``fmnist.export.onnx_runtime`` needs only numpy
and onnxruntime. This package file imports neither, so the serving path stays torch-free.
"""

"""Model serving: the servable formats (MLmodel directories, ONNX, TorchScript, scikit-learn),
the loaders that run them and the Open Inference Protocol (KServe V2) server.

This package is shared by the SDK (``run.log_model`` writes the formats), the registry server
(deciding whether a version can be deployed) and the inference server process
(``python -m podstack.serving``). Heavy runtimes (numpy, onnxruntime, torch, scikit-learn) are
imported lazily, only where a model needs them.
"""

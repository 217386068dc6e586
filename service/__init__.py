"""FastAPI service that serves exported autoencoders through ONNX Runtime (never imports torch)."""

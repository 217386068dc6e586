"""Offline PyTorch package: train convolutional and recurrent autoencoders and export them to ONNX."""

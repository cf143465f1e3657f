"""Model runtime shared by the embedders and the re-rankers: devices, tokenizing and padding, the torch and ONNX
runners, weight conversion and the on-disk model cache."""

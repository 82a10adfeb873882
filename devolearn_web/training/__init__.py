"""The PyTorch side: simulate, preprocess, tune, train, export and evaluate the three models."""

# Run as `python -m devolearn_web.training <command> --model {membrane,nucleus,lineage}`.
# The web app never imports this package: serving needs only onnxruntime.

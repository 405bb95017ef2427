"""Running a pruned model fast: ``deploy`` (fused, frozen or compiled runtimes, checked
against the model), ``export`` (ONNX, shrunk-model reload) and ``sparse`` (CSR Linear
layers where the sparsity pays). Nothing here decides what to prune."""

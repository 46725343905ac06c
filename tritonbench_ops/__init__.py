"""TritonBench adapters for tilenorm, and the baselines TritonBench lacks.

- :mod:`tritonbench_ops.unsloth_style`: Unsloth-style LayerNorm/RMSNorm Triton kernels
  with dW/dB (a like-for-like fwd+bwd peer);
- :mod:`tritonbench_ops.byte_model`: bytes moved, GB/s and % of the copy roof;
- :mod:`tritonbench_ops.inputs`: shapes, input tensors, unfused PyTorch references;
- :mod:`tritonbench_ops.report`: the GB/s-by-shape plot;
- :mod:`tritonbench_ops.harness` (``python -m tritonbench_ops``): runs the operators
  ``layer_norm``, ``rms_norm``, ``gated_rms_norm`` and ``add_rms_norm`` through
  TritonBench's harness. Only the ``operator_*`` modules need TritonBench, and only
  the harness loads them.
"""

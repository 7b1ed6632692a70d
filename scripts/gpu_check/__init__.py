"""scripts/gpu-check: modelhost on one NVIDIA GPU in one prepared run (see scripts/gpu-check)."""

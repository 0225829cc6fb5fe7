#!/usr/bin/env bash
# Print the CUDA toolkit folder (holding bin/nvcc and lib64/libcudart.so). torch's own guess
# follows the nvcc on PATH, which may be a wrapper script outside the toolkit.
set -euo pipefail
for dir in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-*; do
  if [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ] && ls "$dir"/lib64/libcudart.so* >/dev/null 2>&1; then
    echo "$dir"
    exit 0
  fi
done
echo "no CUDA toolkit found (looked for bin/nvcc and lib64/libcudart.so); set CUDA_HOME" >&2
exit 1

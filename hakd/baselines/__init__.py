"""Baselines hakd is compared with: L1-norm channel pruning, uniform width scaling,
round-to-multiple widths (Torch-Pruning's and NNCF's convention) and Deep Compression."""

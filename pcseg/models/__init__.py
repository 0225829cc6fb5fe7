"""Sparse-convolution backbones, heads and the segmentor that joins them."""

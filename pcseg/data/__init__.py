"""Data: on-disk formats, dataset metadata, samples and synthetic scenes."""

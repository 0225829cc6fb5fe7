"""Procedural synthetic scenes written in the real on-disk formats."""

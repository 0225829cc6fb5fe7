"""Readers and writers for each on-disk format; every reader returns a sample dict."""

"""Training methods: how a batch becomes a loss. Registered by name for configs."""

from pcseg.registry import Registry

METHODS: Registry = Registry("method")

from pcseg.methods import supervised  # noqa: E402,F401  (registers its methods)

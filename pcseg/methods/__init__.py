"""Training methods: how a batch becomes a loss. Registered by name for configs."""

from pcseg.registry import Registry

METHODS: Registry = Registry("method")

from pcseg.methods import cpcm, mean_teacher, slidr, supervised  # noqa: E402,F401  (register)

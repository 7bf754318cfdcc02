"""ossbss application shell: CLI, configuration, wiring and the local stack."""

__version__ = "0.1.0"

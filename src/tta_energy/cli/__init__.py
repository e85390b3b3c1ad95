"""The ``tta-energy`` command line; one module per group of subcommands, each with ``register(app)``."""

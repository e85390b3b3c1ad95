"""Model adapters: one module per family, listed once in :mod:`tta_energy.models.catalogue`.

Importing this package imports nothing heavy: :mod:`.catalogue` needs no torch, and the adapters are
imported by :mod:`.registry` only when a model is built.
"""

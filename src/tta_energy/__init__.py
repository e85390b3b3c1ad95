"""tta_energy: measure, analyse and reduce the inference energy of text-to-audio diffusion models."""

__version__ = "0.1.0"

"""Audio-quality metrics computed by this project: FAD, FAD-inf and the CLAP score on LAION-CLAP embeddings.

* :mod:`~tta_energy.quality.frechet` — Fréchet distance (float64, eigenvalue-based) and FAD-inf (seeded);
* :mod:`~tta_energy.quality.profiles` — metric profiles named after the tool they reproduce (fadtk,
  stable-audio-metrics) or ``per-clip``;
* :mod:`~tta_energy.quality.audio` — decoding, mono, 48 kHz, int16 round-trip, the profiles' windows;
* :mod:`~tta_energy.quality.embeddings` — CLAP embeddings from a local Hugging Face folder or LAION-CLAP
  ``.pt``;
* :mod:`~tta_energy.quality.cache` — content-keyed, atomically written embedding cache;
* :mod:`~tta_energy.quality.clap_score` — caption files, matching by file name, cosine similarities;
* confidence intervals: :mod:`tta_energy.intervals` (shared with the analysis);
* :mod:`~tta_energy.quality.score` — the ``tta-energy score`` pipeline and its tidy table.
* :mod:`~tta_energy.quality.synthetic` — CLAP-like synthetic embeddings for the metric benchmarks.
"""

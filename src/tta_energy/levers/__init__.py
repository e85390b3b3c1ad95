"""Energy levers: settings that make a generation cheaper (precision, CUDA graphs, compilation, attention
kernels, fused projections...), switched on by name with ``--levers``.

* :mod:`.spec`: the lever names and their parsing into one :class:`~.spec.Levers` object (no torch);
* :mod:`.apply`: applying levers to a built model;
* :mod:`.equivalence`: whether a configuration still computes the model's function;
* :mod:`.experiment`, :mod:`.ceiling`, :mod:`.tables`: the levers experiment (``tta-energy levers run``);
  :mod:`.profile`: where a denoiser step's time goes; :mod:`.references`: the fp32 reference outputs, kept
  between calls; :mod:`.compile_cache`: torch.compile's on-disk caches and compilation counters;
* :mod:`.plan`, :mod:`.calls`: a levers table declared as data, priced before GPU time is spent and cut into
  device calls (``levers run --plan``, ``--dry-run``);
* :mod:`.report`, :mod:`.summary`, :mod:`.plot`: its table (and the rules that pick each reduction's run),
  summary and figure (``tta-energy levers report``).
"""

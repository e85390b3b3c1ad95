"""Building blocks of the Make-An-Audio replicas that diffusers/transformers do not provide.

* :mod:`.bigvgan` — BigVGAN v1 generator (SnakeBeta, anti-aliased activations);
* :mod:`.msclap` — MS-CLAP text branch (BERT + 3-layer projection applied to every token);
* :mod:`.concat_dit` — Make-An-Audio 2's ``ConcatDiT2MLP`` denoiser;
* :mod:`.vae1d` — Make-An-Audio 2's 1D convolutional KL autoencoder;
* :mod:`.ddim` — the LDM DDIM sampler with its "uniform" timestep spacing.
"""

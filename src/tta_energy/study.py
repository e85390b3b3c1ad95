"""What the study fixed, each in one place: the settings this project takes from "Diffused Responsibility"
(Passoni et al., arXiv 2505.07615) and its repository's inference scripts. It imports nothing."""

from __future__ import annotations

#: the prompt of the steps and batch experiments
STUDY_PROMPT = "Water running out of a faucet, some hitting a sink bottom, and some water filling a cup"
#: Make-An-Audio 2 needs a structured caption: the study's steps and batch scripts used this hand-written one
STUDY_STRUCT_CAPTION = (
    "<water running out of faucet & all>@<water hitting sink bottom & start>@<water filling a cup & mid>"
)
#: seconds of audio per clip
STUDY_DURATION_S = 10.0
#: measured repeats of each configuration of the steps and batch experiments (Passoni et al., arXiv
#: 2505.07615)
STUDY_REPEATS = 5
#: denoising steps of a generation where the study's experiment does not vary them (Passoni et al., arXiv
#: 2505.07615): the batch experiment's, and each model's default here
STUDY_STEPS = 100
#: clips per repeat of the batch experiment (energies of that experiment are reported per this many clips)
CLIPS_PER_REPEAT = 10
#: the GPU the study measured on
STUDY_GPU_NAME = "NVIDIA A40"
#: the grid whose carbon intensity CodeCarbon gave the study's CO2 (ISO 3166 alpha-3)
STUDY_COUNTRY = "ITA"

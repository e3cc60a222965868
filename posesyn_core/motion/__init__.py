"""Motion model: HumanML3D features, the T2M-GPT motion VQ-VAE and transformer (with PoseSyn's MR_init prefix),
text encoders, the `motion-train` stage and the `MotionSynthesizer` facade the `msm` stage uses.

Light to import: torch is only imported by the submodules that need it.
"""

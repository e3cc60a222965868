"""Motion Synthesis Module: motions around each hard pose from text + MR_init (the pseudo-label's VQ indices)."""

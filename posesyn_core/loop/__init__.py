"""A closed loop of PoseSyn rounds: each round's fine-tuned TPE is the next round's TPE (`posesyn experiment loop`)."""

"""Animation: turn fitted bodies into labelled images of a person in a reference scene (render or diffusion)."""

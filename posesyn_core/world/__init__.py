"""The mini-world: motion library (`motions`), lab/wild scene sampling (`scenes`), the `world` stage (`stage`),
contact sheets (`preview`) and the `posesyn world` commands (`commands`)."""

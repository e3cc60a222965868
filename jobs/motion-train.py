"""Entry point of the posesyn-motion-train image (one Job pod): see posesyn_core.launch.entrypoint."""
import sys

from posesyn_core.launch.entrypoint import main

sys.exit(main("motion-train"))

"""``python -m neuromorph`` is the ``neuromorph`` command (used under torchrun)."""
import sys

from .cli import main

sys.exit(main())

"""``python -m dropit.lab.train PARAMS.yaml [key=value ...]``: one run from the command line."""
import sys

from dropit.lab.train.loop import main

sys.exit(main())

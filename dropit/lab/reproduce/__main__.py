"""``python -m dropit.lab.reproduce``: the notebooks through papermill, then the tables and report."""
import sys

from dropit.lab.reproduce.run import main

sys.exit(main())

"""python scripts/make_synthetic_dataset.py: the same as cten-make-synthetic (``cten_common.data.make_synthetic``) (setup.sh installs this checkout into .venv)."""
import sys

from cten_common.data.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())

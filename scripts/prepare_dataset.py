"""python scripts/prepare_dataset.py: the same as cten-prepare-dataset (``cten_common.data.prepare``) (setup.sh installs this checkout into .venv)."""
import sys

from cten_common.data.prepare import main

if __name__ == "__main__":
    sys.exit(main())

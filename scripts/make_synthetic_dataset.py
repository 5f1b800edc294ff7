"""python scripts/make_synthetic_dataset.py: the same as cten-make-synthetic (``cten_common.data.make_synthetic``), for a checkout."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout, not an installed copy
from cten_common.data.make_synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""python scripts/main_job.py: the same as cten-main-job (``cten_jt.main_job``), for a checkout."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout, not an installed copy
from cten_jt.main_job import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

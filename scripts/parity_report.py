"""python scripts/parity_report.py: the same as cten-parity-report (``cten_jt.parity_report``), for a checkout."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout, not an installed copy
from cten_jt.parity_report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

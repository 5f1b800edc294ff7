"""python scripts/parity_report.py: the same as cten-parity-report (``cten_compare.parity_report``) (setup.sh installs this checkout into .venv)."""
import sys

from cten_compare.parity_report import main

if __name__ == "__main__":
    sys.exit(main())

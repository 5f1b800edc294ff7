"""python scripts/main_job.py: the same as cten-main-job (``cten_jt.main_job``) (setup.sh installs this checkout into .venv)."""
import sys

from cten_jt.main_job import main

if __name__ == "__main__":
    sys.exit(main())

"""python -m cten_jt.data.check: the data check of ``cten_common.data.check`` (cten-check-data).

Kept under this name for the commands that use it; the check itself needs no Jittor.
"""
import sys

from cten_common.data.check import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m cten_jt.data.check"))

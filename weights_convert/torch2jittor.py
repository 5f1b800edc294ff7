"""python -m weights_convert.torch2jittor SRC.pth DST.safetensors [--backbone visual|audio] [--config CFG]

(also ``cten-convert torch2jittor ...``)
"""
import sys

from . import convert


def main(argv=None):
    return convert.main("torch2jittor", argv)


if __name__ == "__main__":
    sys.exit(main())

"""python -m weights_convert.jittor2torch SRC.safetensors DST.pth [--format state_dict|reference]

(also ``cten-convert jittor2torch ...``)
"""
import sys

from . import convert


def main(argv=None):
    return convert.main("jittor2torch", argv)


if __name__ == "__main__":
    sys.exit(main())

"""python -m weights_convert.jittor2torch SRC.safetensors DST.pth [--format state_dict|reference]"""
import sys

from .convert import main

if __name__ == "__main__":
    sys.exit(main("jittor2torch"))

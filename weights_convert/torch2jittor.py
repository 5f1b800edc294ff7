"""python -m weights_convert.torch2jittor SRC.pth DST.safetensors [--backbone visual|audio] [--config CFG]"""
import sys

from .convert import main

if __name__ == "__main__":
    sys.exit(main("torch2jittor"))

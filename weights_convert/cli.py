"""cten-convert torch2jittor|jittor2torch SRC DST [...]: both directions under one command."""
import sys

from cten_common.cli import dispatch

TOOLS = {
    "torch2jittor": ("weights_convert.torch2jittor:main", "PyTorch .pth -> Jittor .safetensors (or .pkl)"),
    "jittor2torch": ("weights_convert.jittor2torch:main", "Jittor .safetensors or .pkl -> PyTorch .pth"),
}


def main(argv=None):
    return dispatch("cten-convert", "Convert a CTEN checkpoint strictly, in either direction.", TOOLS, argv)


if __name__ == "__main__":
    sys.exit(main())

"""cten-convert torch2jittor|jittor2torch SRC DST [...]: both directions under one command."""
import sys

from cten_common.cli import dispatch

TOOLS = {
    "torch2jittor": ("weights_convert.convert:torch2jittor_main", "PyTorch .pth -> Jittor .safetensors (or .pkl)"),
    "jittor2torch": ("weights_convert.convert:jittor2torch_main", "Jittor .safetensors or .pkl -> PyTorch .pth"),
}


def main(argv=None):
    return dispatch("cten-convert", "Convert a CTEN checkpoint strictly, in either direction.", TOOLS, argv)


if __name__ == "__main__":
    sys.exit(main())

"""One command over several tools: ``cten-convert`` and ``cten-bench`` (``dispatch``).

``PROG TOOL ARGS...`` runs TOOL's ``main(ARGS)``; each tool keeps its own
options and ``--help``.  The tool's module is imported only when it is chosen,
so ``PROG --help`` loads no framework.
"""
import argparse
import importlib


def dispatch(prog, description, tools, argv=None):
    """Run the tool that ``argv[0]`` names; ``tools``: ``{name: ("module:function", help)}``."""
    epilog = "\n".join(f"  {name:<14}{about}" for name, (_, about) in tools.items())
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=f"tools:\n{epilog}\n\n{prog} TOOL --help: the tool's options",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=list(tools), metavar="TOOL")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the tool's arguments")
    a = parser.parse_args(argv)
    module, function = tools[a.tool][0].split(":")
    return getattr(importlib.import_module(module), function)(a.args)

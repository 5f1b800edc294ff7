"""cten_jt.switches lists every CTEN_* environment variable the packages read,
and is the only module that reads one."""
import ast
import os
import re

from cten_jt import switches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("cten_common", "cten_jt", "cten_torch_ref", "weights_convert")
NAME = re.compile(r"^CTEN_[A-Z0-9_]+$")
# os.environ.get("CTEN_X"), os.environ["CTEN_X"], os.getenv("CTEN_X"), "CTEN_X" in os.environ
READ = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["']CTEN_|["']CTEN_\w+["']\s+(not\s+)?in\s+os\.environ""")


def _sources():
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, ROOT), open(path).read()


def test_every_cten_variable_in_the_sources_is_a_listed_switch():
    # every string constant that is a CTEN_* name (os.environ.get("CTEN_X"), env("CTEN_X"), ...)
    found = {}
    for path, text in _sources():
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
                found.setdefault(node.value, set()).add(path)
    unlisted = {name: sorted(paths) for name, paths in found.items() if name not in switches.SWITCHES}
    assert not unlisted, f"CTEN_* variables read but missing from cten_jt/switches.py: {unlisted}"
    assert set(found) >= {"CTEN_KERNELS", "CTEN_CONV_WEIGHT_CACHE", "CTEN_CUDNN_TF32"}


def test_only_the_switches_module_reads_them():
    readers = [path for path, text in _sources()
               if READ.search(text) and not path.endswith(os.path.join("cten_jt", "switches.py"))]
    assert not readers, readers


def test_the_docstring_table_names_every_switch():
    for name in switches.SWITCHES:
        assert f"``{name}``" in switches.__doc__, name

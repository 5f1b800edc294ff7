"""setup.py's console scripts: every one answers --help with its usage, in process
(no ``pip install`` needed), and the documented ``python -m`` forms still exist."""
import ast
import contextlib
import importlib
import io
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _console_scripts():
    """``[(name, module, function)]`` from setup.py's CONSOLE_SCRIPTS, read without running setup()."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CONSOLE_SCRIPTS":
            entries = ast.literal_eval(node.value)
            break
    else:
        raise AssertionError("setup.py has no CONSOLE_SCRIPTS list")
    out = []
    for entry in entries:
        name, target = (part.strip() for part in entry.split("="))
        module, function = target.split(":")
        out.append((name, module, function))
    return out


SCRIPTS = _console_scripts()


def test_setup_declares_every_tool_once():
    names = [name for name, _, _ in SCRIPTS]
    assert len(names) == len(set(names))
    assert set(names) >= {"cten-train", "cten-evaluate", "cten-predict", "cten-convert", "cten-extract-features",
                          "cten-bench", "cten-prepare-dataset", "cten-make-synthetic", "cten-parity-report",
                          "cten-main-job", "cten-check-data", "cten-train-torch", "cten-check-install",
                          "cten-export"}


def _help(function, argv):
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream), pytest.raises(SystemExit) as exc:
        function(argv)
    return exc.value.code, stream.getvalue()


@pytest.mark.parametrize("name,module,function", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_console_script_answers_help(name, module, function):
    code, text = _help(getattr(importlib.import_module(module), function), ["--help"])
    assert code == 0, (name, text)
    assert text.startswith("usage:"), (name, text[:200])


@pytest.mark.parametrize("prog,module,tools", [("cten-convert", "weights_convert.cli", ("torch2jittor", "jittor2torch")),
                                               ("cten-bench", "benchmarks.cli",
                                                ("frameworks", "scaling", "memory", "kernels", "training", "parity",
                                                 "bank", "data", "epoch", "predict", "precision", "flops", "check", "layers"))])
def test_dispatchers_name_their_tools_and_pass_help_on(prog, module, tools):
    cli = importlib.import_module(module)
    assert tuple(cli.TOOLS) == tools
    code, text = _help(cli.main, ["--help"])
    assert code == 0 and all(tool in text for tool in tools), text
    for tool in tools:                                   # each tool's own parser answers
        code, text = _help(cli.main, [tool, "--help"])
        assert code == 0 and text.startswith("usage:"), (tool, text[:200])


def test_the_python_m_forms_remain():
    for module in ("cten_jt.train", "cten_jt.evaluate", "cten_jt.predict", "cten_jt.extract_features",
                   "cten_deploy.predict", "cten_deploy.export",
                   "cten_jt.main_job", "cten_compare.parity_report", "cten_common.data.check",
                   "cten_common.data.prepare", "cten_common.data.make_synthetic", "weights_convert.cli",
                   "benchmarks.compare_frameworks", "benchmarks.bench_kernels",
                   "benchmarks.compare_training", "benchmarks.compare_bank", "benchmarks.bench_data",
                   "benchmarks.bench_epoch", "benchmarks.bench_precision", "benchmarks.scaling",
                   "benchmarks.memory_levers", "benchmarks.bench_predict", "benchmarks.layer_profile"):
        source = open(os.path.join(ROOT, *module.split(".")) + ".py").read()
        assert 'if __name__ == "__main__":' in source, module


def test_packages_edit_no_sys_path():
    offenders = []
    for package in ("cten_common", "cten_jt", "cten_torch_ref", "weights_convert", "cten_compare", "cten_deploy",
                    "benchmarks"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py") and "sys.path.insert" in open(os.path.join(folder, name)).read():
                    offenders.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert not offenders, offenders


# every command that takes --config: a bad file is one error line naming it, exit 2
CONFIG_COMMANDS = {
    "cten-train": ["--out", "{tmp}/run"],
    "cten-evaluate": ["--weights", "{tmp}/w.safetensors"],
    "cten-extract-features": ["--out", "{tmp}/bank"],
    "cten-main-job": ["--out", "{tmp}/run"],
    "cten-check-data": [],
    "cten-predict": ["{tmp}/video.mp4", "--weights", "{tmp}/w.safetensors"],
}


@pytest.mark.parametrize("name", sorted(CONFIG_COMMANDS))
def test_a_bad_configuration_file_is_one_error_line_and_exit_2(name, tmp_path, capsys):
    module, function = next((m, f) for n, m, f in SCRIPTS if n == name)
    main = getattr(importlib.import_module(module), function)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochz: 3}\n")
    (tmp_path / "w.safetensors").write_bytes(b"")         # exists; never reached
    args = [a.format(tmp=tmp_path) for a in CONFIG_COMMANDS[name]] + ["--config", str(bad)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{bad}: unknown setting 'train.epochz'" in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "w.safetensors"]   # nothing written

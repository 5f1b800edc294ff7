"""tests/jittor_isolation.py: a test whose Jittor operation fails does not fail the next one."""
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

FAILING_THEN_INNOCENT = textwrap.dedent('''
    import cten_jt  # noqa: F401
    import jittor as jt
    import numpy as np

    def _failing():
        x = jt.array(np.ones(3, np.float32))
        return jt.code((3,), "float32", [x], cpu_src='throw std::runtime_error("planted failure");') + 1

    def test_a_fails():
        y = _failing()
        y.sync()

    def test_c_synchronises_everything():
        a = jt.array(np.ones(4, np.float32)) * 2
        jt.sync_all()
        assert float(a.sum().numpy()) == 8.0

    def test_d_keeps_a_failing_operation_pending():
        global KEPT
        KEPT = _failing()            # held beyond the test, never synchronised in it
        assert KEPT.shape == [3]
''')


def _run(tmp_path, plugin):
    (tmp_path / "test_inner.py").write_text(FAILING_THEN_INNOCENT)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(tmp_path / "test_inner.py")]
    if plugin:
        cmd[3:3] = ["-p", "jittor_isolation"]
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600).stdout


def test_a_failed_operation_fails_its_own_test_only(tmp_path):
    out = _run(tmp_path, plugin=True)
    summary = out.split("short test summary")[-1]
    assert "FAILED test_inner.py::test_a_fails" in summary, out[-3000:]
    assert "test_c_synchronises_everything" not in summary, out[-3000:]
    # what a test leaves pending fails at its own teardown, by name
    assert "ERROR test_inner.py::test_d_keeps_a_failing_operation_pending" in summary, out[-3000:]


def test_without_the_plugin_the_failure_spills_over(tmp_path):
    """The plugin's reason to be: without it the third test fails on the first's error."""
    out = _run(tmp_path, plugin=False)
    assert "FAILED test_inner.py::test_c_synchronises_everything" in out, out[-3000:]

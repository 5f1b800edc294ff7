"""A pytest plugin (tests/conftest.py loads it): one test's failed Jittor operation fails
that test only.

Jittor runs operations lazily and keeps every array that something still references.  A
failed test's traceback references its frames, and through them its arrays: the failed
operation stayed in the graph, and the next test that synchronised everything
(``jt.sync_all``) ran it again and failed with the first one's error (seen on CI: an
attention test failed on a frozen-program error).  So:

* after a test fails, the frames of its traceback drop their locals (its report is
  already written): its arrays go, and their pending operations with them;
* after every test, what it left pending is run (``jt.sync_all``): an operation that fails
  there fails that test's teardown, named, instead of a later test.
"""
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    tb = call.excinfo.tb if call.excinfo is not None else None
    while tb is not None:
        frame = tb.tb_frame
        try:
            frame.f_locals.clear()      # CPython 3.11/3.12 keep a snapshot dict beside the frame
        except (AttributeError, TypeError, RuntimeError):
            pass                        # 3.13's f_locals is a view: clear() below is enough
        try:
            frame.clear()
        except RuntimeError:            # a frame still executing
            pass
        tb = tb.tb_next


@pytest.fixture(autouse=True)
def _jittor_operations_end_with_their_test():
    yield
    import jittor as jt
    try:
        jt.sync_all()
    except RuntimeError as exc:
        pytest.fail(f"a Jittor operation this test left pending failed after it: {str(exc)[:2000]}",
                    pytrace=False)

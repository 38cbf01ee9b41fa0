"""rk-exec, the daemon's static exec helper, which the build compiles
(``pip install -e .`` in ``kcont-vm build``): a fresh clone has none, so
its test runs with the binding's, after the build."""

from __future__ import annotations

from request_key_daemon import handlers


def test_rk_exec_reports_the_step_that_failed() -> None:
    """rk-exec, on a key with no authority to assume (the host kernel, no
    such request): exit 126 and one line naming the step, no exec."""
    import subprocess

    done = subprocess.run(handlers.helper_argv(1, b"/bin/true", (b"true",)),
                          capture_output=True, check=False)
    assert done.returncode == 126
    assert done.stderr.decode().startswith("rk-exec: assume authority: ")
    assert len(done.stderr.splitlines()) == 1
    done = subprocess.run([str(handlers.EXEC_HELPER), "12x", "/bin/true", "true"],
                          capture_output=True, check=False)
    assert (done.returncode, done.stderr) == (126, b"rk-exec: bad key serial: 12x\n")

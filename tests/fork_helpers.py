"""Run a test case as a script in a subprocess with a timeout (a hang fails the test instead of blocking the
run), against the vitc under test; PRELUDE gives the scripts the bundled model, inputs and fork helpers."""
import os
import subprocess
import sys
import textwrap

import pytest

import vitc

TIMEOUT = 240  # seconds per case: generous for the ASan build on a busy machine; a hang fails, not blocks

PRELUDE = '''
import os, sys, threading, time, traceback
import numpy as np
import vitc
from vitc import _vitc

T = 3  # threads per forward: not the machine's default, so a child that ran with another count would show


def load():
    return vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=T)


def batch(seed, n=8):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def outputs(model, x):
    out = model(x, output_hidden_states=True)
    return np.concatenate([out.logits.ravel()] + [h.ravel() for h in out.hidden_states])


def check_child(model, x, ref):
    """In a fork child: no workers inherited; the first forward starts T - 1 and matches the parent."""
    assert _vitc.pool_workers() == 0, f"the child kept {_vitc.pool_workers()} of the parent's workers"
    got = outputs(model, x)
    assert np.array_equal(got, ref), "the child's outputs differ from the parent's"
    assert _vitc.pool_workers() == T - 1, (_vitc.pool_workers(), T)
    assert _vitc.pool_probe(T) == T, "a T-thread region did not run on T distinct threads"


def start_child(child):
    """Fork; the child runs child() and exits 0, or 1 with the traceback on stderr. Returns the pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child {pid} failed: wait status {status}"


def fork_and_wait(child):
    wait_child(start_child(child))
'''


def run_case(tmp_path, body, *args, env=None):
    """Write PRELUDE + body to a script, run it with this test's vitc; fail on a timeout or a non-zero exit."""
    script = tmp_path / "case.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    root = os.path.dirname(os.path.dirname(os.path.abspath(vitc.__file__)))  # the vitc under test
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                              timeout=TIMEOUT, cwd=tmp_path, env=child_env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung: no exit within {TIMEOUT} s\nstdout: {exc.stdout}\nstderr: {exc.stderr}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout

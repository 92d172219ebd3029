"""Helpers of the `vitc serve` tests: start the server as a subprocess on a free loopback port, make images,
and compute what the model gives for them directly."""
import base64
import io
import os
import signal
import socket
import subprocess
import tempfile
import sys
import time

import httpx
import numpy as np
from PIL import Image

READY_TIMEOUT_S = 60


def child_env():
    """os.environ for the server process, importing the same vitc as this test run (as conftest's
    subprocess_env fixture, usable from module-scoped fixtures)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m vitc.cli serve ...` on 127.0.0.1:<free port>; stop() kills it by its pid. As a context
    manager: waits until ready, stops on exit."""

    def __init__(self, env, *args, model="vitc-digits"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "vitc.cli", "serve", "--model", model, "--port", str(self.port),
               "--log-level", "warning", *args]
        self.log = open(os.devnull, "wb") if os.environ.get("VITC_SERVE_TEST_LOG") is None else None
        # from outside the repository: `python -m` puts its working directory first on sys.path, and the
        # server must import the same vitc as the test run (the installed one in CI)
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.PIPE,
                                     cwd=tempfile.gettempdir())

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vitc serve exited with {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"vitc serve not ready within {timeout} s")

    def __enter__(self):
        return self.wait_ready()

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stderr.close()
        if self.log is not None:
            self.log.close()


def random_png(seed, width=None, height=None):
    rng = np.random.default_rng(seed)
    w = width or int(rng.integers(8, 80))
    h = height or int(rng.integers(8, 80))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def b64(data):
    return base64.b64encode(data).decode()


class Direct:
    """The model's own results for encoded images (what every server response must equal)."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def of(cls, name):
        import vitc
        return cls(vitc.ViTForImageClassification.from_pretrained(name))

    def pil(self, data):
        return Image.open(io.BytesIO(data))

    def embedding(self, data):
        return self.model.embed(self.pil(data))[0]

    def top_k(self, data, k):
        return self.model.classify(self.pil(data), top_k=k)[0]


def model_folder(name):
    """A model id/folder as it is, or b16 / s16 / ti16: a random checkpoint of that shape (cached on disk)."""
    from vitc.bench.checkpoint import RANDOM_SPECS, build_random_checkpoint
    return str(build_random_checkpoint(name)) if name in RANDOM_SPECS else name


def metric(text, name, **labels):
    """The value of one sample of a Prometheus text page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        base, _, rest = key.partition("{")
        if base == name and all(part in rest for part in want.split(",") if part):
            return float(value)
    return 0.0

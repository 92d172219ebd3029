"""benchmarks/load_serve.py runs end to end (small and bounded): both protocols (OpenAI JSON + base64, v2 with
Triton's binary tensor extension) and both async clients answer every request with the model's own
embedding, and the no-op ceiling is measured."""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "load_serve.py")


@pytest.mark.parametrize("protocol,client", [("openai", "aiohttp"), ("v2-binary", "aiohttp"), ("openai", "httpx")])
def test_load_script_answers_every_request_correctly(protocol, client, subprocess_env):
    cmd = [sys.executable, SCRIPT, "--clients", "3", "--requests", "30", "--max-seconds", "4", "--images", "6",
           "--replicas", "1", "--threads", "1", "--protocol", protocol, "--client", client]
    done = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr  # 1: some answer differed from model.embed
    assert "30 requests (0 errors)" in done.stdout, done.stdout
    assert "no-op endpoint" in done.stdout and "at most" in done.stdout, done.stdout

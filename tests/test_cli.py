"""The `vitc` command, run in-process (main(argv)) on the bundled vitc-digits model, offline."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vitc
from vitc import cli

SAMPLES = os.path.join(os.path.dirname(cli.__file__), "samples")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sample(digit):
    return os.path.join(SAMPLES, f"digit_{digit}.png")


def test_demo_classifies_every_bundled_sample(capsys):
    code, out, err = run(capsys, "demo", "--json", "--top-k", "1")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 10
    for line in lines:
        truth = os.path.basename(line["image"])[len("digit_"):-len(".png")]
        assert line["predictions"][0]["label"] == truth


def test_classify_table_and_top_k(capsys):
    code, out, _ = run(capsys, "classify", sample(3), "--model", "vitc-digits", "--top-k", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == sample(3) and len(lines) == 4 and lines[1].strip().endswith(" 3")


def test_bad_files_are_reported_skipped_and_exit_nonzero(capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, out, err = run(capsys, "classify", str(broken), sample(1), str(tmp_path / "missing.jpg"),
                         "--model", "vitc-digits", "--json")
    assert code == 1
    assert [json.loads(l)["image"] for l in out.splitlines()] == [sample(1)]  # the good one still ran
    assert "broken.png" in err and "missing.jpg" in err


def test_directories_and_globs_expand(capsys):
    code, out, _ = run(capsys, "classify", os.path.join(SAMPLES, "digit_[12].png"), "--model", "vitc-digits",
                       "--json", "--batch-size", "1")
    assert code == 0 and len(out.splitlines()) == 2
    assert cli.expand_images([SAMPLES]) == sorted(os.path.join(SAMPLES, n) for n in os.listdir(SAMPLES))
    code, _, err = run(capsys, "classify", os.path.join(SAMPLES, "*.nothing"), "--model", "vitc-digits")
    assert code == 2 and "no file matches" in err


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_embed_writes_whole_file(capsys, tmp_path, suffix):
    target = tmp_path / f"emb{suffix}"
    code, _, err = run(capsys, "embed", SAMPLES, "--model", "vitc-digits", "--out", str(target))
    assert code == 0, err
    data = np.load(target)
    emb = data["embeddings"] if suffix == ".npz" else data
    assert emb.shape == (10, 64) and np.isfinite(emb).all()
    if suffix == ".npz":
        assert list(data["files"]) == cli.expand_images([SAMPLES])
    assert os.listdir(tmp_path) == [target.name]  # no temporary file left behind
    code, _, err = run(capsys, "embed", SAMPLES, "--model", "vitc-digits", "--out", str(tmp_path / "x.txt"))
    assert code == 2 and ".npy or .npz" in err


def test_info_reports_model_and_runtime(capsys):
    code, out, _ = run(capsys, "info", "vitc-digits")
    assert code == 0
    fields = {k.strip(): v for k, v in (line.split(":", 1) for line in out.splitlines())}
    assert fields["hidden_size"].strip() == "64" and int(fields["parameters"]) > 0
    assert "runtime_isa" in fields and "runtime_thread_pool" in fields
    assert fields["attention"].strip() == "float32"  # a float32 model (head_dim 16 besides)


def test_offline_hub_model_is_a_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, _, err = run(capsys, "classify", sample(0))  # default model: google/vit-base-patch16-224
    assert code == 1 and "offline" in err and "local folder" in err


def test_bad_numbers_are_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["classify", sample(0), "--top-k", "0"])


def test_module_entry_point_runs(tmp_path, subprocess_env):
    out = subprocess.run([sys.executable, "-m", "vitc.cli", "config"], capture_output=True, text=True,
                         cwd=tmp_path, env=subprocess_env)
    assert out.returncode == 0 and "isa" in out.stdout


def test_bench_reports_threads_and_isa(capsys):
    code, out, _ = run(capsys, "bench", "--model", "vitc-digits", "--batch", "2", "--repeats", "2", "--threads", "1")
    assert code == 0
    assert "batch 2, 1 threads" in out and "median" in out and vitc.get_isa() in out

"""`vitc bench --compare` on the bundled tiny model (vitc-digits): every peer, a missing peer, a wrong model
path, Ctrl-C during a run, the --json / --markdown / --chart outputs, the dtypes vitc has no mode for yet,
the fresh-process memory measurement and benchmarks/bench_vit.py over the same package code."""
import json
import os
import re
import signal
import subprocess
import tempfile
import sys
import xml.etree.ElementTree as ET

import pytest

from vitc import cli
from vitc.bench import chart, engines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = "torch,onnxruntime,openvino"
ALL = ["vitc", "torch-eager", "torch-sdpa", "onnxruntime", "openvino"]
QUICK = ["--batch", "1", "2", "--threads", "1", "--rounds", "2", "--min-rounds", "1", "--gap-ms", "0"]


@pytest.fixture()
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench-cache"))


def bench(capsys, *argv):
    code = cli.main(["bench", "--model", "vitc-digits", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def bench_subprocess(env, *argv, block=None, cwd=None):
    """vitc bench in a fresh interpreter; block: a module whose import must fail there, as if not installed."""
    code = ("import sys\n"
            + (f"sys.modules[{block!r}] = None  # import {block} -> ImportError\n" if block else "")
            + "from vitc.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    # `python -c` puts its working directory first on sys.path: run outside the repository, so the child
    # imports the same vitc as this test run (the installed one in CI), not the uncompiled source tree
    return subprocess.run([sys.executable, "-c", code, "bench", "--model", "vitc-digits", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd or tempfile.mkdtemp(), timeout=600)


def test_all_peers_json_markdown_and_chart(capsys, tmp_path, cache):
    out_json, out_svg = tmp_path / "r.json", tmp_path / "r.svg"
    code, out, err = bench(capsys, "--compare", PEERS, *QUICK, "--cache-dir", cache, "--json", str(out_json),
                           "--markdown", "--chart", str(out_svg))
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["engines"] == ALL and report["skipped"] == {}
    assert [(c["batch"], c["threads"]) for c in report["cells"]] == [(1, 1), (2, 1)]
    for cell in report["cells"]:
        assert cell["reference"] == "torch-eager" and cell["rounds"] == 2
        assert set(cell["results"]) == set(ALL)
        for name, s in cell["results"].items():
            assert len(s["times_ms"]) == 2 and s["median_ms"] > 0
            assert s["rel_err"] <= 1e-3 and s["top1_agreement"] == 1.0
            assert s["ms_per_image"] == pytest.approx(s["median_ms"] / cell["batch"])
            assert s["gflops"] == pytest.approx(report["flops_per_image"] * cell["batch"] / s["median_ms"] / 1e6)
            assert s["time_over_vitc"] == pytest.approx(s["median_ms"] / cell["results"]["vitc"]["median_ms"])
            assert 0 < s["peak_fraction"] == pytest.approx(s["gflops"] / cell["peak"]["gflops"])
    # config of vitc-digits: 64 wide, 4 layers, MLP 128, 32x32 images of 4x4 patches, 10 labels
    patches, tokens, d, f = 64, 65, 64, 128
    assert report["flops_per_image"] == 2 * (patches * d * 3 * 16 + 4 * (tokens * d * (4 * d + 2 * f)
                                                                        + 2 * tokens * tokens * d) + d * 10)
    # text: one line per engine per cell with ms/image, GFLOP/s, % peak, time/vitc
    for name in ALL:
        assert sum(bool(re.match(name + r" +\d", line)) for line in out.splitlines()) == 2 + 1  # cells + summary
    assert "GFLOP/s" in out and "% peak" in out and "time/vitc" in out and "load " in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(rows) == 2 * len(ALL) and all(len(r.split("|")) == 10 for r in rows)
    svg = ET.parse(out_svg).getroot()
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title")
            is not None]
    assert len(bars) == 2 * len(ALL)


def test_missing_peer_is_named_and_the_rest_still_runs(subprocess_env, tmp_path, cache):
    out_json = tmp_path / "r.json"
    proc = bench_subprocess(subprocess_env, "--compare", PEERS, *QUICK, "--cache-dir", cache, "--json",
                            str(out_json), block="openvino")
    assert proc.returncode == 0, proc.stderr
    assert "openvino" in proc.stdout and "pip install openvino" in proc.stdout
    report = json.loads(out_json.read_text())
    assert report["engines"] == [n for n in ALL if n != "openvino"]
    assert "pip install openvino" in report["skipped"]["openvino"]
    assert all(line.startswith(("openvino ", "skipped   openvino")) is False or "pip install" in line
               for line in proc.stdout.splitlines())


def test_missing_onnx_exporter_names_it_for_both_onnx_peers(subprocess_env, cache):
    proc = bench_subprocess(subprocess_env, "--compare", PEERS, *QUICK, "--batch", "1", "--cache-dir", cache,
                            block="onnx")
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2 and all("pip install onnx" in line for line in skipped)
    assert "torch-eager" in proc.stdout.split("== batch 1")[1]


def test_wrong_model_path_is_one_clear_error(capsys, tmp_path):
    missing = str(tmp_path / "no-such-model")
    code = cli.main(["bench", "--model", missing, "--compare", PEERS])
    out, err = capsys.readouterr()
    assert code == 1 and missing in err and "no such folder" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--model", "vitc-digits", "--compare", "torch,tensorflow"])
    assert exc.value.code == 2 and "unknown engine 'tensorflow'" in capsys.readouterr().err


def test_json_folder_must_exist(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--model", "vitc-digits", "--json", str(tmp_path / "nope" / "r.json")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_interrupted_run_leaves_no_json(subprocess_env, tmp_path, cache):
    out_json = tmp_path / "r.json"
    argv = ["--compare", "onnxruntime", "--batch", "1", "--threads", "1", "--rounds", "100000",
            "--cell-budget", "0", "--gap-ms", "0", "--cache-dir", cache, "--json", str(out_json)]
    code = "import sys\nfrom vitc.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "bench", "--model", "vitc-digits", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env)
    try:
        for line in proc.stderr:  # the engines are loaded: the run is inside its timed rounds
            if "loaded onnxruntime" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted; no file written" in err
    assert os.listdir(tmp_path) == []  # neither the JSON nor a temporary file


def test_write_json_is_whole_or_nothing(tmp_path):
    from vitc.bench.report import write_json

    path = tmp_path / "r.json"
    write_json({"a": 1}, str(path))
    with pytest.raises(TypeError):
        write_json({"a": BadJson()}, str(path))  # fails halfway through the dump
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["r.json"]


class BadJson:
    def __str__(self):
        raise TypeError("not serializable")


@pytest.mark.parametrize("dtype, runs", [("bfloat16", ["vitc", "torch-eager", "torch-sdpa", "openvino"]),
                                         ("int8", ["vitc", "onnxruntime"])])
def test_lowp_dtypes_run_vitc_and_the_peers(capsys, tmp_path, cache, dtype, runs):
    out_json = tmp_path / "r.json"
    code, out, err = bench(capsys, "--compare", PEERS, "--dtype", dtype, "--batch", "2", "--threads", "1",
                           "--rounds", "2", "--gap-ms", "0", "--cache-dir", cache, "--json", str(out_json))
    assert code == 0, err
    assert "not available in this version" not in out
    report = json.loads(out_json.read_text())
    assert report["engines"] == runs and report["cells"][0]["reference"] == "vitc-float32"
    for s in report["cells"][0]["results"].values():
        assert 0 < s["rel_err"] <= report["tol"]  # not float32 any more, yet the same model
    if dtype == "bfloat16":
        props = report["engine_info"]["openvino"]["threads=1,batch=2"]["compiled_properties"]
        native_bf16 = {"avx512_bf16", "amx_bf16"} & set(report["machine"]["cpu_flags"])
        assert ("bfloat16" if native_bf16 else "f32") in props["INFERENCE_PRECISION_HINT"]  # the plugin's default


def test_vitc_dtype_row_is_one_line_away():
    # vitc's from_pretrained(..., dtype=...): VITC_DTYPES enables its row in each dtype
    assert set(engines.VITC_DTYPES) == set(engines.DTYPES)
    assert engines.VitcEngine.MODES == {d: "vitc" if d == "float32" else f"vitc {d}" for d in engines.VITC_DTYPES}
    assert engines.pick_engines(["vitc"], "float32") == (["vitc"], {})


def test_memory_in_fresh_processes(capsys, tmp_path, cache):
    out_json = tmp_path / "r.json"
    code, out, err = bench(capsys, "--compare", "onnxruntime", "--batch", "1", "--threads", "1", "--rounds", "1",
                           "--cache-dir", cache, "--memory", "--json", str(out_json))
    assert code == 0, err
    memory = json.loads(out_json.read_text())["memory"]
    assert set(memory) == {"vitc", "onnxruntime"}
    for m in memory.values():
        assert m["err_vs_reference"] <= 1e-3 and 0 < m["peak_rss"] < 2 << 30 and m["wall_to_logits_s"] > 0
    assert "peak RSS MiB" in out


def test_bench_vit_script_uses_the_package(subprocess_env, tmp_path, cache):
    out_json = tmp_path / "r.json"
    folder = os.path.join(os.path.dirname(cli.__file__), "checkpoints", "vitc-digits")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_vit.py"), "--model", folder,
                           "--compare", "onnxruntime", "--batch", "1", "--threads", "1", "--rounds", "1",
                           "--no-memory", "--cache-dir", cache, "--json", str(out_json)],
                          capture_output=True, text=True, env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out_json.read_text())["engines"] == ["vitc", "onnxruntime"]


@pytest.mark.parametrize("dtype, peer", [("int8", "onnxruntime"), ("bfloat16", "torch-eager")])
def test_bench_vit_script_passes_dtype_through(subprocess_env, tmp_path, cache, dtype, peer):
    """bench_vit.py --dtype runs vitc's mode and the peer's fast mode, as `vitc bench --dtype` does."""
    out_json = tmp_path / "r.json"
    folder = os.path.join(os.path.dirname(cli.__file__), "checkpoints", "vitc-digits")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_vit.py"), "--model", folder,
                           "--compare", peer, "--dtype", dtype, "--batch", "1", "--threads", "1", "--rounds", "1",
                           "--no-memory", "--cache-dir", cache, "--json", str(out_json)],
                          capture_output=True, text=True, env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out_json.read_text())
    assert report["dtype"] == dtype and report["engines"] == ["vitc", peer]
    assert report["modes"]["vitc"] == f"vitc {dtype}" and report["modes"][peer] == engines.ENGINES[peer].MODES[dtype]
    assert 0 < report["cells"][0]["results"]["vitc"]["rel_err"] <= report["tol"]  # not float32, the same model


def test_chart_marks_the_ceiling_per_thread_count():
    cell = lambda b, t, g: {"batch": b, "threads": t, "results": {  # noqa: E731
        "vitc": {"gflops": g, "ms_per_image": 1.0}, "onnxruntime": {"gflops": g / 2, "ms_per_image": 2.0}}}
    report = {"model": "m", "engines": ["vitc", "onnxruntime"], "cells": [cell(1, 1, 90), cell(1, 2, 170)],
              "ceiling": {"label": "GEMM alone", "gflops": {"1": 100, "2": 200}}}
    root = ET.fromstring(chart.svg(report))
    ns = "{http://www.w3.org/2000/svg}"
    dashed = [ln for ln in root.iter(ns + "line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 3  # one per thread count + the legend's
    texts = [t.text for t in root.iter(ns + "text")]
    assert "GEMM alone" in texts and "batch 1, 2 threads" in texts and "170" in texts
    ys = sorted(float(ln.get("y1")) for ln in dashed[:2])
    assert ys[0] < ys[1]  # the 2-thread ceiling sits higher than the 1-thread one

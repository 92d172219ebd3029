"""benchmarks/bench_memory.py on a tiny checkpoint: one fresh process per row, the saved bf16 / int8 folders
give the converted models' outputs exactly, and the report has every number the README table shows."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import randomize_, torch, transformers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_memory_rows(subprocess_env, tmp_path):
    config = transformers.ViTConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                    image_size=32, patch_size=8, num_labels=7)
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config)
    randomize_(hf, 0)
    hf.save_pretrained(tmp_path / "model")
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_memory.py"), "--model",
                           str(tmp_path / "model"), "--repeats", "1", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["float32", "bfloat16 (convert)", "int8 (convert)", "bfloat16 (saved)", "int8 (saved)"]
    assert rows["float32"]["err_vs_float32"] == 0 and rows["float32"]["rss_vs_float32"] == 1
    for dtype in ("bfloat16", "int8"):
        converted, saved = rows[f"{dtype} (convert)"], rows[f"{dtype} (saved)"]
        assert 0 < converted["err_vs_float32"] == saved["err_vs_float32"]  # the saved folder: the same outputs
        assert saved["dtype"] == dtype and saved["source"] == "saved"
    for r in rows.values():
        assert r["peak_rss"] > 10 << 20 and r["load_s"] > 0 and r["wall_to_logits_s"] > r["load_s"]
    assert "| int8 (saved) |" in proc.stdout and "cold start" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["model", "r.json"]  # the saved folders were temporary

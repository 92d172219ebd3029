"""`vitc explain` on the bundled vitc-digits model, offline, run in-process."""
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from test_cli import SAMPLES, run, sample  # noqa: E402  (in-process `vitc` runs, the bundled digits)

import vitc  # noqa: E402
from vitc import cli  # noqa: E402
from vitc.heatmap import caption, label_lines  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return vitc.ViTForImageClassification.from_pretrained("vitc-digits")


def test_one_png_per_image_same_size_captioned_with_the_labels(capsys, tmp_path):
    code, out, err = run(capsys, "explain", SAMPLES, "--model", "vitc-digits", "--out", str(tmp_path))
    assert code == 0, err
    names = sorted(os.listdir(tmp_path))
    assert names == [f"digit_{d}.rollout.png" for d in range(10)]
    for d in range(10):
        with Image.open(tmp_path / f"digit_{d}.rollout.png") as png, Image.open(sample(d)) as original:
            assert png.size == original.size and png.mode == "RGB"
    lines = out.splitlines()
    assert len(lines) == 10 and lines[3].startswith(f"{sample(3)} -> {tmp_path / 'digit_3.rollout.png'}")
    assert lines[3].endswith(" 3)")  # the top label


def test_png_is_the_api_overlay_of_the_same_forward(capsys, tmp_path, digits):
    """The PNG equals overlay(rollout map) + caption(top-k labels) computed through the Python API."""
    code, _, err = run(capsys, "explain", sample(7), sample(2), "--model", "vitc-digits", "--out", str(tmp_path),
                       "--top-k", "2", "--method", "cls", "--layer", "2", "--head", "1", "--alpha", "0.7",
                       "--colormap", "deep")
    assert code == 0, err
    for d in (7, 2):
        heat = vitc.cls_attention(digits, sample(d), layer=2, head=1)[0]
        expected = caption(vitc.overlay(sample(d), heat, alpha=0.7, colormap="deep", model=digits),
                           label_lines(digits.classify(sample(d), top_k=2)[0]))
        with Image.open(tmp_path / f"digit_{d}.cls-layer2-head1.png") as png:
            np.testing.assert_array_equal(np.asarray(png), np.asarray(expected))


def test_rollout_options_reach_the_maps(capsys, tmp_path, digits):
    code, _, err = run(capsys, "explain", sample(4), "--model", "vitc-digits", "--out", str(tmp_path),
                       "--head-fusion", "max", "--discard-ratio", "0.5", "--alpha", "1")
    assert code == 0, err
    heat = vitc.attention_rollout(digits, sample(4), head_fusion="max", discard_ratio=0.5)[0]
    expected = caption(vitc.overlay(sample(4), heat, alpha=1.0, model=digits),
                       label_lines(digits.classify(sample(4), top_k=3)[0]))
    with Image.open(tmp_path / "digit_4.rollout.png") as png:
        np.testing.assert_array_equal(np.asarray(png), np.asarray(expected))


def test_grid_has_the_photo_and_every_head(capsys, tmp_path):
    code, out, err = run(capsys, "explain", sample(5), "--model", "vitc-digits", "--out", str(tmp_path), "--grid",
                         "--layer", "-2")
    assert code == 0, err
    with Image.open(tmp_path / "digit_5.heads-layer2.png") as png:
        assert png.size == (5 * 160 + 4 * 4, 160)  # photo + 4 heads, 64 px digits shown at 160 px


def test_bad_files_are_named_skipped_and_exit_1(capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "explain", str(broken), sample(1), str(tmp_path / "missing.jpg"),
                         "--model", "vitc-digits", "--out", str(out_dir))
    assert code == 1
    assert "broken.png" in err and "missing.jpg" in err
    assert os.listdir(out_dir) == ["digit_1.rollout.png"]  # the good one still ran, nothing half-written


def test_same_names_do_not_overwrite(capsys, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.open(sample(8)).save(other / "digit_1.png")
    code, _, err = run(capsys, "explain", sample(1), str(other / "digit_1.png"), "--model", "vitc-digits",
                       "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["digit_1-2.rollout.png", "digit_1.rollout.png"]


@pytest.mark.parametrize("argv,message", [
    (["--method", "rollout", "--layer", "1"], "use them with --method cls"),
    (["--method", "rollout", "--grid"], "use them with --method cls"),
    (["--method", "cls", "--head-fusion", "max"], "apply to --method rollout"),
    (["--grid", "--head", "1"], "leave out --head"),
    (["--layer", "4"], r"--layer must be in \[-4, 4\)"),
    (["--head", "4"], r"--head must be 'mean' or in \[0, 4\)"),
    (["--discard-ratio", "1"], "--discard-ratio in"),
])
def test_option_errors_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "explain", sample(0), "--model", "vitc-digits", "--out", str(tmp_path), *argv)
    assert code == 2
    assert re.search(message, err), err
    assert os.listdir(tmp_path) == []


def test_head_must_be_a_number_or_mean(capsys):
    with pytest.raises(SystemExit):
        cli.main(["explain", sample(0), "--model", "vitc-digits", "--head", "first"])
    assert "expected a head number or 'mean'" in capsys.readouterr().err


def test_encoder_checkpoint_gets_maps_without_labels(capsys, tmp_path):
    """A checkpoint saved from ViTModel (DINO-style) has no classifier: the maps, no caption."""
    from checkpoints import build
    ckpt = build("model_no_pooler", str(tmp_path))
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    code, out, err = run(capsys, "explain", str(tmp_path / "x.png"), "--model", ckpt.path, "--out", str(tmp_path))
    assert code == 0, err
    model = vitc.ViTModel.from_pretrained(ckpt.path)
    expected = vitc.overlay(rgb, vitc.attention_rollout(model, rgb)[0], model=model)
    with Image.open(tmp_path / "x.rollout.png") as png:
        np.testing.assert_array_equal(np.asarray(png), np.asarray(expected))
    assert out.strip().endswith("x.rollout.png")

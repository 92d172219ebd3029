"""Images decoded on a thread ahead of the forward (vitc/image_prefetch.py), and the zero-shot CLI that starts
it before the model loads: the same batches, pixels, failures and order as decoding in line; a tiny memory
budget, an early stop and an unexpected error in the thread; `classify --labels` and `search` print the same
labels and scores whatever the batch size (1 = one image at a time, in line) and whether the checkpoint
lets decoding start before the load (preprocessor_config.json) or not."""
import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from test_cli_text import models  # noqa: E402,F401 - the module's CLIP and SigLIP checkpoints

import vitc  # noqa: E402
from vitc import cli, cli_text  # noqa: E402
from vitc.image_prefetch import ImagePrefetch, decode_chunk  # noqa: E402


def _folder(folder, n=11, bad=(3, 8)):
    """n files of assorted sizes and modes; the indices in `bad` are not images."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        path = os.path.join(folder, f"p{i:02d}.png" if i % 3 else f"p{i:02d}.jpg")
        if i in bad:
            with open(path, "wb") as f:
                f.write(b"not an image" * i)
            continue
        pixels = rng.integers(0, 256, (20 + 7 * i, 50 - i, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert("L" if i == 5 else "RGB").save(path)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def _processor(models):
    return vitc.CLIPModel.from_pretrained(models["clip"]).image_processor


@pytest.mark.parametrize("batch_size", [1, 4, 5, 64])
def test_prefetch_equals_decoding_in_line(tmp_path, models, batch_size):
    paths = _folder(tmp_path / "imgs")
    proc = _processor(models)
    with ImagePrefetch(proc, paths, batch_size) as prefetch:
        got = list(prefetch)
    want = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    assert [chunk for chunk, *_ in got] == want
    for (chunk, good, pixels, failures), paths_in in zip(got, want):
        ref_good, ref_pixels, ref_failures, _ = decode_chunk(proc, paths_in)
        assert good == ref_good and failures == ref_failures
        if ref_pixels is None:
            assert pixels is None
        else:
            np.testing.assert_array_equal(pixels, ref_pixels)
            np.testing.assert_array_equal(pixels, proc([p for p in good])["pixel_values"])
    bad = [p for *_, failures in got for p, _ in failures]
    assert bad == [paths[3], paths[8]]


def test_a_budget_smaller_than_a_batch_still_moves(tmp_path, models):
    paths = _folder(tmp_path / "imgs", bad=())
    prefetch = ImagePrefetch(_processor(models), paths, 2, ahead_bytes=1)
    with prefetch:
        got = list(prefetch)
    assert sum(len(good) for _, good, _, _ in got) == len(paths)
    assert not prefetch._thread.is_alive()


def test_leaving_early_stops_the_thread(tmp_path, models):
    paths = _folder(tmp_path / "imgs", n=30, bad=())
    prefetch = ImagePrefetch(_processor(models), paths, 1, ahead_bytes=1)
    with prefetch:
        next(iter(prefetch))
    assert not prefetch._thread.is_alive()
    assert all(t.name != "vitc-image-prefetch" or not t.is_alive() for t in threading.enumerate())


def test_an_unexpected_error_comes_after_the_batches_before_it(tmp_path, models):
    paths = _folder(tmp_path / "imgs", bad=())
    proc = _processor(models)

    def fragile(image):
        if image == paths[5]:
            raise RuntimeError("decoder crashed")
        return proc(image)

    seen = []
    with pytest.raises(RuntimeError, match="decoder crashed"):
        with ImagePrefetch(fragile, paths, 2) as prefetch:
            for chunk, *_ in prefetch:
                seen.append(chunk)
    assert seen == [paths[0:2], paths[2:4]]


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ImagePrefetch(None, ["a"], 0)


def _classify(capsys, folder, model, *extra):
    status = cli.main(["classify", folder, "--labels", "cat,dog,car", "--model", model, "--json", "--top-k", "3",
                       *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_classify_labels_same_whatever_the_batching(tmp_path, models, family, capsys, monkeypatch):
    paths = _folder(tmp_path / "imgs")
    folder = str(tmp_path / "imgs")
    early = []
    real = cli_text.early_image_processor
    monkeypatch.setattr(cli_text, "early_image_processor", lambda m: early.append(real(m)) or early[-1])
    status, one_by_one, err = _classify(capsys, folder, models[family], "--batch-size", "1")
    assert status == 1 and err.count("skipped") == 2 and paths[3] in err and paths[8] in err
    assert early and early[-1] is not None  # decoding started before the load
    for batch in ("3", "8", "64"):
        assert _classify(capsys, folder, models[family], "--batch-size", batch) == (status, one_by_one, err)
    rows = [json.loads(line) for line in one_by_one.splitlines()]
    good = [p for i, p in enumerate(paths) if i not in (3, 8)]
    assert [r["image"] for r in rows] == good
    model = vitc.AutoModel.from_pretrained(models[family])
    for row, ranked in zip(rows, model.classify(good, labels=["cat", "dog", "car"])):
        assert [(p["label"], p["score"]) for p in row["predictions"]] == ranked


def test_classify_labels_without_a_preprocessor_config(tmp_path, models, capsys):
    """No preprocessor_config.json: no head start; the model's own defaults decode the images."""
    bare = str(tmp_path / "bare")
    shutil.copytree(models["clip"], bare)
    os.remove(os.path.join(bare, "preprocessor_config.json"))
    assert cli_text.early_image_processor(bare) is None
    folder = str(tmp_path / "imgs")
    _folder(folder, bad=())
    status, out, _ = _classify(capsys, folder, bare, "--batch-size", "4")
    assert status == 0
    model = vitc.CLIPModel.from_pretrained(bare)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    want = model.classify(files, labels=["cat", "dog", "car"])
    assert [[(p["label"], p["score"]) for p in json.loads(line)["predictions"]] for line in out.splitlines()] == want


def test_a_stale_head_start_is_redone_with_the_models_processor(tmp_path, models, capsys, monkeypatch):
    """If the processor read before the load is not the model's, its batches are dropped, not used."""
    folder = str(tmp_path / "imgs")
    _folder(folder, bad=())
    _, want, _ = _classify(capsys, folder, models["clip"])
    wrong = vitc.CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                    image_mean=[0.0, 0.0, 0.0])
    monkeypatch.setattr(cli_text, "early_image_processor", lambda m: wrong)
    assert _classify(capsys, folder, models["clip"])[1] == want


def test_search_same_whatever_the_batching(tmp_path, models, capsys):
    folder = str(tmp_path / "imgs")
    _folder(folder, bad=(4,))
    outs = []
    for batch in ("1", "5"):
        argv = ["search", folder, "a red apple", "--model", models["clip"], "--json", "--top-k", "20",
                "--batch-size", batch, "--cache", str(tmp_path / f"cache{batch}.npz")]
        assert cli.main(argv) == 1
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 10


def test_zero_shot_batches_default_to_32(tmp_path, models, capsys, monkeypatch):
    """Without --batch-size: 32 images per forward for classify --labels and search, 8 for plain classify."""
    sizes = []
    real = cli_text.ImagePrefetch

    def spy(processor, paths, batch_size, **kw):
        sizes.append(batch_size)
        return real(processor, paths, batch_size, **kw)

    monkeypatch.setattr(cli_text, "ImagePrefetch", spy)
    folder = str(tmp_path / "imgs")
    _folder(folder, n=3, bad=())
    assert _classify(capsys, folder, models["clip"])[0] == 0
    assert cli.main(["search", folder, "a cat", "--model", models["clip"], "--cache", str(tmp_path / "c.npz")]) == 0
    assert sizes == [cli_text.BATCH_SIZE] * 2 == [32, 32]
    assert cli.build_parser().parse_args(["classify", "x"]).batch_size is None  # resolved per path

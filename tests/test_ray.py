"""vitc.ray: the map_batches callable class alone (decoding, skipping bad images, equality with model.embed /
classify), then embed_images on a local Ray cluster (ray.init(num_cpus=2)) written to Parquet."""
import logging
import os
import sys
import threading
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import write_checkpoint  # noqa: E402
from serve_helpers import Direct, random_png  # noqa: E402
from test_hostile_images import png  # noqa: E402

import vitc  # noqa: E402
import vitc.ray as vray  # noqa: E402

MODEL = "vitc-digits"
RAY_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def direct():
    return Direct.of(MODEL)


def test_callable_class_embeds_and_skips_bad_images(direct, caplog):
    good = [random_png(i) for i in range(4)]
    bad = {"truncated.png": good[0][:-40], "zero.png": png(0, 0, zlib.compress(b"")),
           "bomb.png": png(60000, 60000, zlib.compress(b"")), "text.png": b"hello"}
    blobs = good[:2] + list(bad.values()) + good[2:]
    paths = ["a.png", "b.png", *bad, "c.png", "d.png"]
    fn = vray.ImageModel(MODEL, threads=2)
    with caplog.at_level(logging.WARNING, logger="vitc.ray"):
        out = fn({"bytes": np.array(blobs, dtype=object), "path": np.array(paths, dtype=object)})
    assert list(out["path"]) == ["a.png", "b.png", "c.png", "d.png"]
    np.testing.assert_array_equal(out["embedding"], np.stack([direct.embedding(x) for x in good]))
    assert [name for name, _ in fn.skipped] == list(bad)
    for name in bad:
        assert f"skipped {name}" in caplog.text
    empty = fn({"bytes": np.array([b"junk"], dtype=object)})  # a batch with nothing decodable
    assert empty["embedding"].shape == (0, 64) and fn.skipped[-1][0] == "row 0"


def test_callable_class_reads_paths_and_skips_unreadable_files(direct, tmp_path):
    good = [random_png(20 + i) for i in range(3)]
    paths = []
    for i, data in enumerate(good):
        paths.append(str(tmp_path / f"{i}.png"))
        (tmp_path / f"{i}.png").write_bytes(data)
    paths.insert(1, str(tmp_path / "missing.png"))
    fn = vray.ImageModel(MODEL, threads=1)
    out = fn({"path": np.array(paths, dtype=object)})  # no bytes column: the actor reads the files
    assert list(out["path"]) == [paths[0], paths[2], paths[3]]
    np.testing.assert_array_equal(out["embedding"], np.stack([direct.embedding(x) for x in good]))
    assert fn.skipped[0][0] == paths[1] and "cannot read" in fn.skipped[0][1]


def test_local_files_lists_what_read_binary_files_would(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("a.png", "b/c.png", "b/d.jpg", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    root = str(tmp_path)
    assert vray.local_files(root) == [f"{root}/a.png", f"{root}/b/c.png", f"{root}/b/d.jpg"]
    assert vray.local_files(f"{root}/b/*.png") == [f"{root}/b/c.png"]
    assert vray.local_files([f"file://{root}/a.png", tmp_path / "b"]) == [f"{root}/a.png", f"{root}/b/c.png",
                                                                            f"{root}/b/d.jpg"]
    assert vray.local_files([f"{root}/a.png", "s3://bucket/images/"]) is None  # URIs: Ray's file systems
    for missing in (f"{root}/nope.png", f"{root}/*.gif"):
        with pytest.raises(FileNotFoundError, match="nope.png|gif"):
            vray.local_files(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        vray.local_files(str(tmp_path / "empty"))


def test_callable_class_classifies(direct):
    good = [random_png(10 + i) for i in range(3)]
    out = vray.ImageModel(MODEL, threads=1, task="classify", top_k=3)({"bytes": np.array(good, dtype=object)})
    for i, image in enumerate(good):
        want = direct.top_k(image, 3)
        assert out["labels"][i] == [lab for lab, _ in want]
        np.testing.assert_array_equal(out["scores"][i], np.float32([s for _, s in want]))


def test_threads_are_required_and_tasks_checked(tmp_path):
    for threads in (None, 0, 1.5, True):
        with pytest.raises(ValueError, match="threads must be given"):
            vray.ImageModel(MODEL, threads=threads)
    with pytest.raises(ValueError, match="task must be"):
        vray.ImageModel(MODEL, threads=1, task="segment")
    encoder = write_checkpoint(tmp_path / "enc", head=False)
    with pytest.raises(ValueError, match="no classification head"):
        vray.ImageModel(encoder, threads=1, task="classify")


def test_embed_images_on_a_local_cluster_to_parquet(tmp_path, direct, subprocess_env):
    import ray
    import pyarrow.parquet as pq
    folder = tmp_path / "images"
    folder.mkdir()
    images = {f"img{i}.png": random_png(30 + i) for i in range(7)}
    for name, data in images.items():
        (folder / name).write_bytes(data)
    (folder / "corrupt.png").write_bytes(images["img0.png"][:-60])
    # workers import the same vitc as this run (a development run has PYTHONPATH=.)
    env = {"PYTHONPATH": subprocess_env["PYTHONPATH"]} if subprocess_env.get("PYTHONPATH") else {}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
    watchdog = threading.Timer(RAY_TIMEOUT_S, ray.shutdown)  # bounded: a stuck job is shut down, the test fails
    watchdog.start()
    try:
        ds = vray.embed_images(str(folder), MODEL, threads=1, batch_size=3)
        ds.write_parquet(str(tmp_path / "out"))
    finally:
        watchdog.cancel()
        ray.shutdown()
    table = pq.read_table(str(tmp_path / "out"))
    got = dict(zip((os.path.basename(p) for p in table.column("path").to_pylist()),
                   np.asarray(table.column("embedding").combine_chunks().to_numpy())))
    assert sorted(got) == sorted(images)  # the corrupt file is skipped, not a failed job
    for name, data in images.items():
        np.testing.assert_array_equal(got[name], direct.embedding(data))

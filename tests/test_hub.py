"""from_pretrained with a Hub repo id, never touching the network: a Hugging Face cache laid out in tmp_path
(models--org--name/snapshots/<sha>/..., refs/<name>) read offline, and a fake Hub for the download path."""
import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import checkpoints, pixels  # noqa: E402,F401

import vitc  # noqa: E402
from vitc import hub  # noqa: E402

SHA_MAIN = "a" * 40
SHA_PR = "b" * 40


def cache_repo(cache, repo_id, files, sha=SHA_MAIN, ref="main"):
    """Put files ({name: source path or bytes}) into the hub cache layout as snapshot `sha`, ref -> sha."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        blob = repo / "blobs" / f"{sha[:8]}-{name}"
        if isinstance(src, bytes):
            blob.write_bytes(src)
        else:
            shutil.copyfile(src, blob)
        os.symlink(blob, snap / name)  # snapshots hold symlinks to blobs, as huggingface_hub writes them
    if ref:
        (repo / "refs" / os.path.dirname(ref)).mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(sha)
    return snap


def folder_files(path):
    return {n: os.path.join(path, n) for n in os.listdir(path)}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE=tmp_path/hub; any download attempt fails the test."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("network access in an offline test")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "file_exists", no_network)
    return cache


def test_repo_id_from_offline_cache(checkpoints, offline):
    ckpt = checkpoints.get("small")
    cache_repo(offline, "org/tiny-vit", {**folder_files(ckpt.path), "preprocessor_config.json": b'{"size": 30}'})
    model = vitc.ViTForImageClassification.from_pretrained("org/tiny-vit")
    local = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    x = pixels((1, 3, 30, 42))
    np.testing.assert_array_equal(model(x).logits, local(x).logits)
    assert model.preprocessor_config_path.endswith(os.path.join(SHA_MAIN, "preprocessor_config.json"))
    assert local.preprocessor_config_path is None
    assert vitc.ViTConfig.from_pretrained("org/tiny-vit") == model.config


def test_revision_and_explicit_cache_dir(checkpoints, offline, tmp_path, monkeypatch):
    """revision picks a snapshot through refs (a PR ref) or by commit sha; cache_dir overrides HF_HUB_CACHE."""
    other = tmp_path / "other-cache"
    small, square = checkpoints.get("small"), checkpoints.get("square")
    cache_repo(other, "org/m", folder_files(small.path))
    cache_repo(other, "org/m", folder_files(square.path), sha=SHA_PR, ref="refs/pr/3")
    assert vitc.ViTForImageClassification.from_pretrained("org/m", cache_dir=str(other)).config.hidden_size == 40
    for rev in ("refs/pr/3", SHA_PR):
        model = vitc.ViTForImageClassification.from_pretrained("org/m", revision=rev, cache_dir=str(other))
        assert model.config.hidden_size == 24
    with pytest.raises(hub.CheckpointNotFoundError, match="not in the Hugging Face cache"):
        vitc.ViTForImageClassification.from_pretrained("org/m")  # HF_HUB_CACHE has nothing


def test_sharded_repo_from_cache(checkpoints, offline):
    ckpt = checkpoints.get("sharded")
    files = folder_files(ckpt.path)
    assert "model.safetensors.index.json" in files and len(files) > 3
    cache_repo(offline, "org/sharded", files)
    model = vitc.ViTForImageClassification.from_pretrained("org/sharded")
    x = pixels((2, 3, 30, 42), seed=3)
    np.testing.assert_array_equal(model(x).logits,
                                  vitc.ViTForImageClassification.from_pretrained(ckpt.path)(x).logits)


def test_offline_and_not_cached(offline):
    with pytest.raises(hub.CheckpointNotFoundError,
                       match=r"config.json of Hub repo 'org/absent' is not in the Hugging Face cache .*offline mode "
                             r"is on \(HF_HUB_OFFLINE=1\).*path of a local folder"):
        vitc.ViTModel.from_pretrained("org/absent")


def test_offline_config_cached_but_weights_not(checkpoints, offline):
    cache_repo(offline, "org/half", {"config.json": os.path.join(checkpoints.get("small").path, "config.json")})
    with pytest.raises(hub.CheckpointNotFoundError, match="model.safetensors of Hub repo 'org/half' is not in the"):
        vitc.ViTModel.from_pretrained("org/half")


def test_pickle_only_repo_is_refused(checkpoints, offline):
    cfg = os.path.join(checkpoints.get("small").path, "config.json")
    cache_repo(offline, "org/old", {"config.json": cfg, "pytorch_model.bin": b"\x80\x04 not unpickled"})
    with pytest.raises(hub.CheckpointNotFoundError, match=r"only pickled weights \(pytorch_model.bin\).*never "
                                                          r"unpickles.*revision='refs/pr/N'"):
        vitc.ViTForImageClassification.from_pretrained("org/old")


def test_local_folder_errors(checkpoints, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(hub.CheckpointNotFoundError, match="no config.json in this folder"):
        vitc.ViTModel.from_pretrained(str(folder))
    shutil.copy(os.path.join(checkpoints.get("small").path, "config.json"), folder)
    with pytest.raises(hub.CheckpointNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
        vitc.ViTModel.from_pretrained(str(folder))
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(hub.CheckpointNotFoundError, match="only pickled weights"):
        vitc.ViTModel.from_pretrained(str(folder))
    with pytest.raises(hub.CheckpointNotFoundError, match="is a file: pass the folder"):
        vitc.ViTModel.from_pretrained(str(folder / "config.json"))
    with pytest.raises(hub.CheckpointNotFoundError, match="no such folder"):
        vitc.ViTModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(hub.CheckpointNotFoundError, match="neither a local folder nor a valid Hub repo id"):
        vitc.ViTModel.from_pretrained("bad repo id!")


class FakeHub:
    """Stands in for huggingface_hub.hf_hub_download / file_exists: serves one repo's files from a folder."""

    def __init__(self, files, cache):
        self.files, self.cache, self.downloads = files, cache, []

    def download(self, repo_id, filename, revision=None, cache_dir=None, token=None, **kwargs):
        import httpx2
        from huggingface_hub.errors import RemoteEntryNotFoundError
        self.downloads.append((filename, revision, token))
        if filename not in self.files:
            request = httpx2.Request("GET", f"https://huggingface.co/{repo_id}/resolve/main/{filename}")
            raise RemoteEntryNotFoundError(f"404 {filename}", response=httpx2.Response(404, request=request))
        dst = os.path.join(self.cache, filename)
        shutil.copyfile(self.files[filename], dst)
        return dst

    def exists(self, repo_id, filename, revision=None, token=None, **kwargs):
        return filename in self.files


def fake_hub(monkeypatch, tmp_path, files):
    import huggingface_hub
    cache = tmp_path / "downloaded"
    cache.mkdir()
    fake = FakeHub(files, str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    monkeypatch.setattr(huggingface_hub, "file_exists", fake.exists)
    return fake


def test_download_fetches_only_what_is_needed(checkpoints, monkeypatch, tmp_path):
    src = checkpoints.get("small").path
    files = {**folder_files(src), "pytorch_model.bin": __file__, "tf_model.h5": __file__,
             "preprocessor_config.json": os.path.join(src, "config.json")}
    fake = fake_hub(monkeypatch, tmp_path, files)
    model = vitc.ViTForImageClassification.from_pretrained("org/m", revision="v1", token="hf_x")
    assert [d[0] for d in fake.downloads] == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert all(d[1:] == ("v1", "hf_x") for d in fake.downloads)
    assert model.config.hidden_size == 40


def test_download_sharded_and_missing_optional(checkpoints, monkeypatch, tmp_path):
    fake = fake_hub(monkeypatch, tmp_path, folder_files(checkpoints.get("sharded").path))
    vitc.ViTForImageClassification.from_pretrained("org/sharded")
    names = [d[0] for d in fake.downloads]
    assert names[:4] == ["config.json", "preprocessor_config.json", "model.safetensors",
                         "model.safetensors.index.json"]
    assert sorted(names[4:]) == sorted(n for n in os.listdir(checkpoints.get("sharded").path)
                                       if n.endswith(".safetensors"))


def test_download_pickle_only(checkpoints, monkeypatch, tmp_path):
    files = {"config.json": os.path.join(checkpoints.get("small").path, "config.json"),
             "pytorch_model.bin": __file__}
    fake = fake_hub(monkeypatch, tmp_path, files)
    with pytest.raises(hub.CheckpointNotFoundError, match="Hub repo 'org/old' has only pickled weights"):
        vitc.ViTForImageClassification.from_pretrained("org/old")
    assert "pytorch_model.bin" not in [d[0] for d in fake.downloads]
    (tmp_path / "empty").mkdir()
    fake_hub(monkeypatch, tmp_path / "empty", {})
    with pytest.raises(hub.CheckpointNotFoundError, match="Hub repo 'org/empty' has no file config.json"):
        vitc.ViTForImageClassification.from_pretrained("org/empty")

"""Finding a checkpoint's files: a local folder, or a Hub repo id through huggingface_hub's cache.

Only what the model needs is fetched: config.json, preprocessor_config.json when the repo has one, and
model.safetensors or model.safetensors.index.json plus its shards. Pickled weights (pytorch_model.bin) are
never loaded. HF_HUB_OFFLINE=1 (read at call time) or local_files_only=True uses the cache only.
"""
import os

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


class CheckpointNotFoundError(FileNotFoundError):
    """The checkpoint, or a file it needs, cannot be found (locally, in the cache or on the Hub)."""


class CheckpointFiles:
    """Local paths of a checkpoint's files. `weights` is model.safetensors or the shard index."""

    def __init__(self, config, weights, preprocessor=None, source=None):
        self.config, self.weights, self.preprocessor, self.source = config, weights, preprocessor, source

    @property
    def sharded(self):
        return self.weights.endswith(".json")

    def __repr__(self):
        return f"CheckpointFiles(config={self.config!r}, weights={self.weights!r}, preprocessor={self.preprocessor!r})"


def _truthy(value):
    return str(value).strip().upper() in ("1", "ON", "YES", "TRUE")


def is_offline(local_files_only=False):
    if local_files_only or _truthy(os.environ.get("HF_HUB_OFFLINE", "")) or \
            _truthy(os.environ.get("TRANSFORMERS_OFFLINE", "")):
        return True
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _no_safetensors_message(where, found):
    return (f"{where} has only pickled weights ({', '.join(found)}) and no {WEIGHTS_NAME}: vitc never unpickles "
            f"files. Use a revision that has safetensors weights (the Hub's safetensors conversion bot opens a "
            f"pull request for them: try revision='refs/pr/N' with that PR's number), or convert it yourself with "
            f"transformers: Model.from_pretrained(...).save_pretrained(folder) writes {WEIGHTS_NAME}.")


# ---- local folders ----------------------------------------------------------------------------------
def _local_files(folder):
    def path(name):
        p = os.path.join(folder, name)
        return p if os.path.isfile(p) else None

    config = path(CONFIG_NAME)
    if config is None:
        raise CheckpointNotFoundError(f"{folder}: no {CONFIG_NAME} in this folder")
    weights = path(WEIGHTS_NAME) or path(WEIGHTS_INDEX_NAME)
    if weights is None:
        pickled = [n for n in PICKLE_NAMES if path(n)]
        if pickled:
            raise CheckpointNotFoundError(_no_safetensors_message(folder, pickled))
        raise CheckpointNotFoundError(f"{folder}: no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in this folder "
                                      f"(found: {', '.join(sorted(os.listdir(folder))) or 'nothing'})")
    return CheckpointFiles(config, weights, path(PREPROCESSOR_NAME), source=folder)


# ---- Hub repos --------------------------------------------------------------------------------------
class _Repo:
    def __init__(self, repo_id, revision, cache_dir, token, local_files_only):
        from huggingface_hub.utils import HFValidationError, validate_repo_id
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            raise CheckpointNotFoundError(f"{repo_id!r} is neither a local folder nor a valid Hub repo id "
                                          f"('org/name')") from None
        self.repo_id, self.revision, self.token = repo_id, revision, token
        self.cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE") or None
        self.offline = is_offline(local_files_only)

    def describe(self):
        rev = f" at revision {self.revision!r}" if self.revision else ""
        return f"Hub repo {self.repo_id!r}{rev}"

    def cached(self, filename):
        """Path in the cache, or None (also when the cache records that the file does not exist)."""
        from huggingface_hub import try_to_load_from_cache
        p = try_to_load_from_cache(self.repo_id, filename, cache_dir=self.cache_dir, revision=self.revision)
        return p if isinstance(p, str) else None

    def fetch(self, filename, required=True):
        """Local path of `filename` (downloaded if needed), None if the repo does not have it."""
        if self.offline:
            path = self.cached(filename)
            if path is None and required:
                raise CheckpointNotFoundError(
                    f"{filename} of {self.describe()} is not in the Hugging Face cache "
                    f"({self.cache_dir or 'default location'}) and offline mode is on (HF_HUB_OFFLINE=1). "
                    f"Download it once while online, or pass the path of a local folder holding config.json "
                    f"and {WEIGHTS_NAME} (e.g. written by transformers' save_pretrained) to from_pretrained.")
            return path
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
        try:
            return hf_hub_download(self.repo_id, filename, revision=self.revision, cache_dir=self.cache_dir,
                                   token=self.token)
        except RemoteEntryNotFoundError:
            if required:
                raise CheckpointNotFoundError(f"{self.describe()} has no file {filename}") from None
            return None
        except LocalEntryNotFoundError as exc:
            raise CheckpointNotFoundError(
                f"could not download {filename} of {self.describe()} and it is not cached ({exc}). Check the "
                f"connection, or pass the path of a local folder holding config.json and {WEIGHTS_NAME}.") from None

    def files(self):
        config = self.fetch(CONFIG_NAME)
        preprocessor = self.fetch(PREPROCESSOR_NAME, required=False)
        weights = self.fetch(WEIGHTS_NAME, required=False)
        if weights is None:
            index = self.fetch(WEIGHTS_INDEX_NAME, required=False)
            if index is not None:
                from .safetensors_reader import CheckpointReader
                for shard in CheckpointReader.shard_names(index)[1]:
                    self.fetch(shard)  # lands next to the index in the same snapshot folder
                weights = index
        if weights is None:
            pickled = [n for n in PICKLE_NAMES[:1] if self._has(n)]
            if pickled:
                raise CheckpointNotFoundError(_no_safetensors_message(self.describe(), pickled))
            if self.offline:
                self.fetch(WEIGHTS_NAME)  # raises the offline message
            raise CheckpointNotFoundError(f"{self.describe()} has neither {WEIGHTS_NAME} nor {WEIGHTS_INDEX_NAME}")
        return CheckpointFiles(config, weights, preprocessor, source=self.describe())

    def _has(self, filename):
        """Whether the repo has `filename`, without downloading it."""
        if self.offline:
            return self.cached(filename) is not None
        from huggingface_hub import file_exists
        try:
            return file_exists(self.repo_id, filename, revision=self.revision, token=self.token)
        except Exception:  # noqa: BLE001 - only used to word an error message
            return False


def resolve_checkpoint(path_or_repo_id, revision=None, cache_dir=None, token=None, local_files_only=False):
    """CheckpointFiles of a local folder, a model bundled with vitc (e.g. "vitc-digits") or a Hub repo id."""
    path = os.fspath(path_or_repo_id)
    from .checkpoints import bundled_model_path
    bundled = bundled_model_path(path) if not os.path.exists(path) else None
    if bundled is not None:
        return _local_files(bundled)
    if os.path.isdir(path):
        return _local_files(path)
    if os.path.exists(path):
        raise CheckpointNotFoundError(f"{path} is a file: pass the folder holding config.json and {WEIGHTS_NAME}")
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path:
        raise CheckpointNotFoundError(f"{path}: no such folder (and not a Hub repo id 'org/name')")
    return _Repo(path, revision, cache_dir, token, local_files_only).files()


def cached_file(repo_id, filename, revision=None, cache_dir=None, token=None):
    """Local path of an optional file of a Hub repo (downloaded if needed), None if the repo has none.
    Offline with the file not cached: None as well, since nothing says the file exists."""
    return _Repo(os.fspath(repo_id), revision, cache_dir, token, False).fetch(filename, required=False)


def resolve_file(path_or_repo_id, filename, revision=None, cache_dir=None, token=None, local_files_only=False):
    """Path of one required file of a local folder or a Hub repo."""
    path = os.fspath(path_or_repo_id)
    if os.path.isdir(path):
        p = os.path.join(path, filename)
        if not os.path.isfile(p):
            raise CheckpointNotFoundError(f"{path}: no {filename} in this folder")
        return p
    return _Repo(path, revision, cache_dir, token, local_files_only).fetch(filename)

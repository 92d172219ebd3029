"""The engines the benchmark compares, one class each, same small interface:

    engine = ENGINES[name](checkpoint_folder, onnx_file, threads)   # load, configured for `threads`
    engine.prepare(batch)        # untimed per-batch setup (OpenVINO static shapes); also re-asserts threads
    logits = engine.run(pixels)  # np.float32 [N,3,224,224] -> np.ndarray [N,1000]; this call is timed
    engine.info()                # dict of settings actually in effect, for the report
    engine.close()

Every framework is imported inside its class, so a child process measuring one engine loads only that one.
"""
import sys

from common import REPO_ROOT, quiet_transformers


def _import_vitc_package():
    """This checkout's vitc (in-place build: python setup.py build_ext --inplace), never a stale install:
    the repository root goes first on sys.path. The header prints the path that was used."""
    if sys.path[:1] != [str(REPO_ROOT)]:
        sys.path.insert(0, str(REPO_ROOT))
    import vitc

    return vitc


def import_vitc():
    """(vitc module, None) when vitc and its model layer are importable, else (None, reason)."""
    try:
        vitc = _import_vitc_package()
    except ImportError as exc:
        return None, (f"cannot import vitc ({exc}); build it in place first: "
                      f"cd {REPO_ROOT} && python setup.py build_ext --inplace")
    if not hasattr(vitc, "ViTForImageClassification"):
        return None, f"{vitc.__file__} has no ViTForImageClassification (model layer not merged yet)"
    return vitc, None


def vitc_config():
    """vitc.runtime.config() plus where vitc was imported from, or {'error': why} (no model layer needed)."""
    try:
        vitc = _import_vitc_package()
    except ImportError as exc:
        return {"error": f"cannot import vitc: {exc}"}
    cfg = {"version": getattr(vitc, "__version__", None), "path": vitc.__file__}
    try:
        from vitc import runtime

        cfg.update(runtime.config())
    except Exception as exc:  # report, never abort the benchmark over a header line
        cfg["error"] = f"vitc.runtime.config() failed: {exc}"
    return cfg


class Engine:
    name = "?"

    @staticmethod
    def imports():
        """Import the framework (what a cold start pays before loading); returns nothing."""

    def prepare(self, batch):
        pass

    def run(self, pixels):
        raise NotImplementedError

    def info(self):
        return {}

    def close(self):
        pass


class VitcEngine(Engine):
    name = "vitc"

    @staticmethod
    def imports():
        vitc, why = import_vitc()
        if vitc is None:
            raise RuntimeError(f"vitc unavailable: {why}")
        return vitc

    def __init__(self, folder, onnx_file, threads):
        vitc = self.imports()
        self.threads = threads
        self.model = vitc.ViTForImageClassification.from_pretrained(str(folder), threads=threads)

    def run(self, pixels):
        return self.model(pixels).logits

    def info(self):
        return {"threads": self.threads, **vitc_config()}


class TorchEngine(Engine):
    """transformers' ViTForImageClassification in eager PyTorch, under torch.inference_mode()."""
    attn = "?"

    @staticmethod
    def imports():
        import torch  # noqa: F401
        import transformers  # noqa: F401

        quiet_transformers()

    def __init__(self, folder, onnx_file, threads):
        self.imports()
        import torch
        import transformers

        self.torch = torch
        self.threads = threads
        torch.set_num_threads(threads)
        self.model = transformers.ViTForImageClassification.from_pretrained(
            folder, attn_implementation=self.attn).eval()
        if self.model.config._attn_implementation != self.attn:
            raise RuntimeError(f"asked transformers for attn_implementation={self.attn!r}, "
                               f"got {self.model.config._attn_implementation!r}")

    def prepare(self, batch):
        # Process-wide setting shared by both torch engines: re-assert it before each (batch, threads) cell.
        self.torch.set_num_threads(self.threads)

    def run(self, pixels):
        with self.torch.inference_mode():
            return self.model(pixel_values=self.torch.from_numpy(pixels)).logits.numpy()

    def info(self):
        return {"threads": self.torch.get_num_threads(), "attn_implementation": self.attn,
                "mkldnn": self.torch.backends.mkldnn.is_available()}


class TorchEagerEngine(TorchEngine):
    name = "torch-eager"
    attn = "eager"


class TorchSdpaEngine(TorchEngine):
    name = "torch-sdpa"  # transformers' default
    attn = "sdpa"


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    @staticmethod
    def imports():
        import onnxruntime  # noqa: F401

    def __init__(self, folder, onnx_file, threads):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads = threads
        self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, pixels):
        return self.session.run(None, {self.input_name: pixels})[0]

    def info(self):
        return {"intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
                "graph_optimization_level": "ORT_ENABLE_ALL", "providers": self.session.get_providers()}


class OpenVinoEngine(Engine):
    """OpenVINO CPU plugin on the ONNX file. f32 must be forced: on CPUs with AVX512_BF16/AMX the plugin
    silently runs bf16 otherwise. shape='static' compiles one model per batch size (OpenVINO's best case),
    'dynamic' compiles once with a dynamic batch axis."""
    name = "openvino"
    shape = "static"

    @staticmethod
    def imports():
        import openvino  # noqa: F401

    def __init__(self, folder, onnx_file, threads):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.threads = threads
        self.model = self.core.read_model(str(onnx_file))
        self.config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                       "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = {}  # batch (or None when dynamic) -> (compiled model, infer request)
        self.current = None
        if self.shape == "dynamic":
            self.current = self._compile(None)

    def _compile(self, batch):
        if batch not in self.compiled:
            if batch is not None:
                dims = self.model.input(0).get_partial_shape()  # [batch?, 3, 224, 224]: only batch varies
                shape = [batch] + [dims[i].get_length() for i in range(1, dims.rank.get_length())]
                self.model.reshape({self.model.input(0): self.ov.PartialShape(shape)})
            compiled = self.core.compile_model(self.model, "CPU", self.config)
            precision = compiled.get_property("INFERENCE_PRECISION_HINT")
            if precision != self.ov.Type.f32:
                raise RuntimeError(f"OpenVINO compiled with inference precision {precision}, expected f32")
            self.compiled[batch] = (compiled, compiled.create_infer_request())
        return self.compiled[batch]

    def prepare(self, batch):
        if self.shape == "static":
            self.current = self._compile(batch)

    def run(self, pixels):
        request = self.current[1]
        request.infer({0: pixels}, share_inputs=True)
        return request.get_output_tensor(0).data

    def info(self):
        compiled = self.current[0] if self.current else None
        if compiled is None:
            return {"config": self.config, "shape": self.shape}
        props = {}
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS",
                    "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING"):
            try:
                props[key] = str(compiled.get_property(key))
            except RuntimeError:
                pass
        return {"shape": self.shape, "compiled_properties": props}

    def close(self):
        self.compiled.clear()
        self.current = None


ENGINES = {cls.name: cls for cls in
           (VitcEngine, TorchEagerEngine, TorchSdpaEngine, OnnxRuntimeEngine, OpenVinoEngine)}
# Names accepted by --peers: a group expands to its engines.
GROUPS = {"torch": ["torch-eager", "torch-sdpa"], "ort": ["onnxruntime"], "ov": ["openvino"]}
NEEDS_ONNX = {"onnxruntime", "openvino"}


def expand_peers(names):
    out = []
    for name in names:
        for engine in GROUPS.get(name, [name]):
            if engine not in ENGINES:
                raise SystemExit(f"unknown peer {name!r}: expected some of "
                                 f"{', '.join(list(ENGINES) + list(GROUPS))}")
            if engine not in out:
                out.append(engine)
    return out

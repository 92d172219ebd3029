"""The engines compared, one class each, same small interface:

    engine = ENGINES[name](checkpoint, threads, dtype)  # load, configured for `threads` and `dtype`
    engine.prepare(batch)        # untimed per-batch setup (OpenVINO static shapes); also re-asserts threads
    out = engine.run(pixels)     # np.float32 [N,C,H,W] -> np.ndarray: the checkpoint's output (families.py); timed
    engine.info()                # dict of settings actually in effect, for the report
    engine.close()

Every framework is imported inside its class, so a child process measuring one engine loads only that one.
Each class lists the dtypes it has a mode for (MODES) and the packages it needs (REQUIRES: import name ->
pip name).
"""
import numpy as np

from .checkpoint import quiet_transformers

DTYPES = ("float32", "bfloat16", "int8")
# vitc's own modes: from_pretrained(..., dtype=...) (VitcEngine passes dtype= through).
VITC_DTYPES = ("float32", "bfloat16", "int8")
EXPORT_REQUIRES = {"torch": "torch==2.13.0", "transformers": "transformers", "onnx": "onnx"}


class Engine:
    name = "?"
    MODES = {}  # dtype -> what runs, for the report
    REQUIRES = {}

    @classmethod
    def imports(cls):
        """Import the framework (what a cold start pays before loading)."""
        for module in cls.REQUIRES:
            __import__(module)

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
    MODES = {d: "vitc" if d == "float32" else f"vitc {d}" for d in VITC_DTYPES}

    def __init__(self, checkpoint, threads, dtype="float32"):
        import vitc

        cls = getattr(vitc, checkpoint.target.vitc_class)  # the class families.TARGETS names
        kwargs = {"dtype": dtype}  # explicit: a folder saved in another dtype is an error, not a silent switch
        self.threads, self.output = threads, checkpoint.output_name
        self.model = cls.from_pretrained(str(checkpoint.folder), threads=threads, **kwargs)

    def run(self, pixels):
        return getattr(self.model(pixels), self.output)

    def info(self):
        from .. import __version__, __file__ as path
        from ..runtime import config

        return {"threads": self.threads, "version": __version__, "path": path, **config()}


class TorchEngine(Engine):
    """transformers' model class named in config.json in eager PyTorch under torch.inference_mode();
    bfloat16: the same float32 model under torch.autocast("cpu", dtype=torch.bfloat16)."""
    attn = "?"
    REQUIRES = {"torch": "torch==2.13.0", "transformers": "transformers"}

    @classmethod
    def imports(cls):
        super().imports()
        quiet_transformers()

    def __init__(self, checkpoint, threads, dtype="float32"):
        import torch

        self.torch, self.threads, self.dtype = torch, threads, dtype
        torch.set_num_threads(threads)
        self.model = checkpoint.torch_model(self.attn)
        self.output = checkpoint.output_name

    def prepare(self, batch):
        # process-wide setting shared by both torch engines: re-assert it before each (batch, threads) cell
        self.torch.set_num_threads(self.threads)

    def run(self, pixels):
        torch = self.torch
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.dtype == "bfloat16"):
            out = getattr(self.model(pixel_values=torch.from_numpy(pixels)), self.output)
            return out.float().numpy()

    def info(self):
        return {"threads": self.torch.get_num_threads(), "attn_implementation": self.attn,
                "autocast": "bfloat16" if self.dtype == "bfloat16" else None,
                "mkldnn": self.torch.backends.mkldnn.is_available()}


class TorchEagerEngine(TorchEngine):
    name = "torch-eager"
    attn = "eager"
    MODES = {"float32": "PyTorch eager f32", "bfloat16": "PyTorch eager, bf16 autocast"}


class TorchSdpaEngine(TorchEngine):
    name = "torch-sdpa"  # transformers' default attention
    attn = "sdpa"
    MODES = {"float32": "PyTorch sdpa f32", "bfloat16": "PyTorch sdpa, bf16 autocast"}


class OnnxRuntimeEngine(Engine):
    """The ONNX export on the CPU provider; int8: quantize_dynamic (per-channel int8 weights) of it."""
    name = "onnxruntime"
    MODES = {"float32": "ONNX Runtime f32", "int8": "ONNX Runtime dynamic int8 (per channel)"}
    REQUIRES = {"onnxruntime": "onnxruntime"}

    def __init__(self, checkpoint, threads, dtype="float32"):
        import onnxruntime as ort

        path = checkpoint.onnx_int8_file() if dtype == "int8" else checkpoint.onnx_file()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.threads, self.path = threads, str(path)
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, pixels):
        return self.session.run(None, {self.input_name: pixels})[0]

    def info(self):
        return {"intra_op_num_threads": self.threads, "inter_op_num_threads": 1, "model": self.path,
                "graph_optimization_level": "ORT_ENABLE_ALL", "providers": self.session.get_providers()}


class OpenVinoEngine(Engine):
    """OpenVINO's CPU plugin on its conversion of the ONNX export. float32 is forced: on CPUs with
    AVX512_BF16/AMX the plugin silently runs bf16 otherwise; bfloat16 = the plugin's default precision.
    shape 'static' compiles one model per batch size (OpenVINO's best case), 'dynamic' compiles once."""
    name = "openvino"
    MODES = {"float32": "OpenVINO, f32 forced", "bfloat16": "OpenVINO, default precision"}
    REQUIRES = {"openvino": "openvino"}
    shape = "static"

    def __init__(self, checkpoint, threads, dtype="float32"):
        import openvino as ov

        self.ov, self.core, self.threads, self.dtype = ov, ov.Core(), threads, dtype
        self.model = self.core.read_model(str(checkpoint.onnx_file()))
        self.config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if dtype == "float32":
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = {}  # batch (None when dynamic) -> (compiled model, infer request)
        self.current = self._compile(None) if self.shape == "dynamic" else None

    def _compile(self, batch):
        if batch not in self.compiled:
            if batch is not None:
                dims = self.model.input(0).get_partial_shape()  # [batch?, C, H, W]: only batch varies
                shape = [batch] + [dims[i].get_length() for i in range(1, dims.rank.get_length())]
                self.model.reshape({self.model.input(0): self.ov.PartialShape(shape)})
            compiled = self.core.compile_model(self.model, "CPU", self.config)
            precision = compiled.get_property("INFERENCE_PRECISION_HINT")
            if self.dtype == "float32" and precision != self.ov.Type.f32:
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
NEEDS_ONNX = {"onnxruntime", "openvino"}
# names accepted by --compare: a group expands to its engines
GROUPS = {"torch": ["torch-eager", "torch-sdpa"], "ort": ["onnxruntime"], "ov": ["openvino"]}


def expand(names):
    """Engine names from --compare items (groups expanded, order kept, no repeats); ValueError if unknown."""
    out = []
    for name in names:
        for engine in GROUPS.get(name, [name]):
            if engine not in ENGINES:
                raise ValueError(f"unknown engine {name!r}: expected some of "
                                 f"{', '.join(list(ENGINES) + list(GROUPS))}")
            if engine not in out:
                out.append(engine)
    return out


def missing_packages(name):
    """pip names of the packages engine `name` needs that do not import here (its ONNX export's too)."""
    needs = dict(ENGINES[name].REQUIRES)
    if name in NEEDS_ONNX:
        needs.update(EXPORT_REQUIRES)
    missing = []
    for module, pip_name in needs.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(pip_name)
    return missing


def pick_engines(names, dtype):
    """(runnable engine names, {name: why not}) for this dtype: no mode for it, or packages missing."""
    runnable, skipped = [], {}
    for name in names:
        cls = ENGINES[name]
        if dtype not in cls.MODES:
            skipped[name] = (f"vitc's {dtype} mode is not available in this version" if name == "vitc"
                             else f"no {dtype} mode in this comparison "
                                  f"(it has: {', '.join(cls.MODES)})")
            continue
        missing = missing_packages(name)
        if missing:
            skipped[name] = (f"not installed: pip install {' '.join(repr(m) if '=' in m else m for m in missing)}"
                             f"  (or pip install \"vitc[bench]\")")
            continue
        runnable.append(name)
    return runnable, skipped


def as_array(out):
    return np.array(out, dtype=np.float32, copy=True)

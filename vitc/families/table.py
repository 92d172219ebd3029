"""One table per family: which checkpoint tensor fills which of our parameters, with its expected shape.

A family lists Param entries (llm.c's ParameterTensors / fill_in_parameter_sizes is the model): our field
name, the HF name template(s), the shape each must have for the config, whether it is a Linear weight
packed for the GEMM, and an optional load-time transform (several tensors stacked by rows = fused Q|K|V;
(name, row0, row1) = a row range of a packed tensor; scale = a layer-scale vector folded into the rows).
WeightPlan turns the tables into the set of expected tensors (validation, before anything is read), the
parameter count, and the arena handles (loading). The encoder layer's fields are the C struct
vitc_vit_layer's (vitc/_model.pxi LAYER_STRUCT); a family's layer table must name exactly those.
"""
import numpy as np

from .. import _vitc
from ..weights import WeightArena


class WeightsMismatchError(ValueError):
    """The checkpoint's tensors do not match what the config describes (missing, unexpected, mis-shaped)."""


class Param:
    """One parameter. names: HF name template(s) ({i} = layer index), stacked by rows when several; a
    name may be (template, row0, row1) for a row range of a larger tensor, whose full shape is `shape`.
    shape: config -> the shape of each named tensor. packed: a Linear weight (rows = outputs) packed for
    the GEMM, else a float32 vector. scale: template of a vector multiplying the rows / values (its shape:
    the rows). when: config -> whether the parameter exists (e.g. a bias behind a config flag)."""

    def __init__(self, field, names, shape, packed=False, scale=None, when=None):
        self.field = field
        self.names = (names,) if isinstance(names, (str, tuple)) and not _is_template_list(names) else tuple(names)
        self.shape, self.packed, self.scale, self.when = shape, packed, scale, when

    def present(self, config):
        return self.when is None or bool(self.when(config))

    def sources(self, prefix, i=None):
        """The arena sources of this parameter for layer i, with the checkpoint prefix."""
        out = []
        for name in self.names:
            if isinstance(name, tuple):
                out.append((prefix + name[0].format(i=i), name[1], name[2]))
            else:
                out.append(prefix + name.format(i=i))
        return tuple(out)

    def expected(self, config, prefix, i=None):
        """{checkpoint name: shape} this parameter reads."""
        shape = tuple(self.shape(config))
        out = {}
        for source in self.sources(prefix, i):
            out[source[0] if isinstance(source, tuple) else source] = shape
        if self.scale is not None:
            rows = shape[0] if not isinstance(self.names[0], tuple) else None
            out[prefix + self.scale.format(i=i)] = (rows if rows is not None else self.names[0][2] - self.names[0][1],)
        return out


def _is_template_list(names):
    """A tuple of templates (fused) vs one (template, row0, row1) range."""
    return isinstance(names, tuple) and not (len(names) == 3 and isinstance(names[1], int))


def expected_tensors(config, model_params, layer_params, prefix=""):
    """{checkpoint name: shape} of the tables for this config."""
    out = {}
    for p in model_params:
        if p.present(config):
            out.update(p.expected(config, prefix))
    for i in range(config.num_hidden_layers):
        for p in layer_params:
            if p.present(config):
                out.update(p.expected(config, prefix, i))
    return out


def layer_field_names():
    """The C layer struct's fields, in order (generated from _vitc.LAYER_STRUCT)."""
    return tuple(f for f, _, _ in _vitc.LAYER_STRUCT)


class WeightPlan:
    """Checks a checkpoint's tensors against a family's tables, then loads them into one arena.

    tables: (model_params, layer_params, head_params): model and layer tensors carry `prefix` (the
    checkpoint's base-model prefix, "" when it has none), head tensors do not. ignored(name): tensors the
    family's transformers class drops silently. relevant(name): the keys that must all be expected or
    ignored (the others are another model's, e.g. a head under a base model)."""

    def __init__(self, config, keys, shape_of, tables, prefix, source, ignored=lambda name: False,
                 relevant=lambda name: True, summary=None):
        self.config, self.source, self.prefix = config, source, prefix
        self.model_params, self.layer_params, self.head_params = tables
        summary = summary or _config_summary(config)
        keys = set(keys)
        expected = expected_tensors(config, self.model_params, self.layer_params, prefix)
        for p in self.head_params:
            if p.present(config):
                expected.update(p.expected(config, ""))
        missing = [k for k in expected if k not in keys]
        if missing:
            raise WeightsMismatchError(f"{source}: missing tensor(s) {short(missing)} required by the config "
                                       f"({summary})")
        unexpected = sorted(k for k in keys if relevant(k) and k not in expected and not ignored(k))
        if unexpected:
            raise WeightsMismatchError(f"{source}: unexpected tensor(s) {short(unexpected)} for the config "
                                       f"({summary})")
        for k, shape in expected.items():
            got = tuple(shape_of(k))
            if got != shape:
                raise WeightsMismatchError(f"{source}: tensor {k!r} has shape {list(got)}, expected {list(shape)} "
                                           f"from the config ({summary})")
        self.num_parameters = sum(int(np.prod(s)) for s in expected.values())
        self.expected = expected  # {checkpoint name: shape}: what save_pretrained writes back

    def load(self, isa, reader, lowp=None):
        """(model {field: array}, [layer {field: array or None}], head {field: array}) from one arena.
        lowp: (kernel set, dtype) codes for the encoder layers' Linear weights (bf16 / int8; they come back as
        PackedWeights); everything else stays float32."""
        arena = WeightArena(isa, reader, lowp)
        linear = frozenset(f for f, _, cols in _vitc.LAYER_STRUCT if cols is not None)

        def declare(p, prefix, i=None):
            if not p.present(self.config):
                return None
            scale = None if p.scale is None else self.prefix + p.scale.format(i=i)
            if not p.packed:
                return arena.vector(*p.sources(prefix, i), scale=scale)
            return arena.packed(*p.sources(prefix, i), scale=scale, lowp=i is not None and p.field in linear)

        model = {p.field: declare(p, self.prefix) for p in self.model_params}
        layers = [{p.field: declare(p, self.prefix, i) for p in self.layer_params}
                  for i in range(self.config.num_hidden_layers)]
        head = {p.field: declare(p, "") for p in self.head_params}
        arena.load()
        get = arena.array
        return ({k: get(v) for k, v in model.items()}, [{k: get(v) for k, v in layer.items()} for layer in layers],
                {k: get(v) for k, v in head.items()})


def short(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _config_summary(config):
    return (f"hidden_size={config.hidden_size}, layers={config.num_hidden_layers}, "
            f"intermediate_size={config.intermediate_size}, image_size={config.image_size}, "
            f"patch_size={config.patch_size}, num_channels={config.num_channels}, "
            f"qkv_bias={getattr(config, 'qkv_bias', True)}, num_labels={config.num_labels}")

"""ViT / DeiT / DINO(v1): transformers' ViTModel / DeiTModel names, as tables."""
from .table import Param, WeightPlan, WeightsMismatchError


def _d(c):
    return (c.hidden_size,)


def _dd(c):
    return (c.hidden_size, c.hidden_size)


# the encoder layer, HF names under the base-model prefix; fields: the C struct vitc_vit_layer
LAYER = (
    Param("ln1_g", "encoder.layer.{i}.layernorm_before.weight", _d),
    Param("ln1_b", "encoder.layer.{i}.layernorm_before.bias", _d),
    Param("ln2_g", "encoder.layer.{i}.layernorm_after.weight", _d),
    Param("ln2_b", "encoder.layer.{i}.layernorm_after.bias", _d),
    # rows query | key | value: one [3D, D] GEMM
    Param("qkv_w", tuple(f"encoder.layer.{{i}}.attention.attention.{x}.weight" for x in ("query", "key", "value")),
          _dd, packed=True),
    Param("qkv_b", tuple(f"encoder.layer.{{i}}.attention.attention.{x}.bias" for x in ("query", "key", "value")),
          _d, when=lambda c: c.qkv_bias),
    Param("proj_w", "encoder.layer.{i}.attention.output.dense.weight", _dd, packed=True),
    Param("proj_b", "encoder.layer.{i}.attention.output.dense.bias", _d),
    Param("fc1_w", "encoder.layer.{i}.intermediate.dense.weight", lambda c: (c.intermediate_size, c.hidden_size),
          packed=True),
    Param("fc1_b", "encoder.layer.{i}.intermediate.dense.bias", lambda c: (c.intermediate_size,)),
    Param("fc2_w", "encoder.layer.{i}.output.dense.weight", lambda c: (c.hidden_size, c.intermediate_size),
          packed=True),
    Param("fc2_b", "encoder.layer.{i}.output.dense.bias", _d),
)


def num_prefix(config):
    """Prefix tokens before the patches: CLS, and DeiT's distillation token."""
    return 2 if config.model_type == "deit" else 1


def embeddings(config):
    c = config
    params = [
        Param("cls", "embeddings.cls_token", lambda c: (1, 1, c.hidden_size)),
        Param("pos", "embeddings.position_embeddings",
              lambda c: (1, c.num_patches + num_prefix(c), c.hidden_size)),
        Param("patch_w", "embeddings.patch_embeddings.projection.weight",
              lambda c: (c.hidden_size, c.num_channels) + tuple(c.patch_hw), packed=True),
        Param("patch_b", "embeddings.patch_embeddings.projection.bias", _d),
        Param("ln_g", "layernorm.weight", _d),
        Param("ln_b", "layernorm.bias", _d),
    ]
    if num_prefix(c) == 2:
        params.append(Param("dist", "embeddings.distillation_token", lambda c: (1, 1, c.hidden_size)))
    return params


POOLER = (Param("pooler_w", "pooler.dense.weight", lambda c: (c.pooler_output_size, c.hidden_size), packed=True),
          Param("pooler_b", "pooler.dense.bias", lambda c: (c.pooler_output_size,)))


def plan(config, keys, shape_of, with_head, source):
    """The WeightPlan of a ViT/DeiT checkpoint. Prefix rules follow transformers' base_model_prefix ("vit",
    or "deit" for DeiT): a base model accepts keys with or without the prefix (ignoring head tensors), a
    model with a head needs the prefixed form. Tensors transformers drops silently are ignored: mask_token;
    the pooler under a classification head. Sets plan.has_pooler and plan.head ("classifier" / "teacher")."""
    prefix = "deit." if config.model_type == "deit" else "vit."
    keys = set(keys)
    has_prefix = any(k.startswith(prefix) for k in keys)
    used = prefix if has_prefix else ""
    model = list(embeddings(config))
    head, head_kind = [], None
    ignored = {used + "embeddings.mask_token"}
    if with_head:
        if not has_prefix:
            raise WeightsMismatchError(
                f"{source}: no tensor starts with {prefix!r}: this is a base-model checkpoint (e.g. saved from "
                f"ViTModel) without a classification head; load it with ViTModel instead")
        head_kind = "teacher" if "cls_classifier.weight" in keys else "classifier"
        names = ("classifier",) if head_kind == "classifier" else ("cls_classifier", "distillation_classifier")
        for i, n in enumerate(names):
            head += [Param(f"head{i}_w", f"{n}.weight", lambda c: (c.num_labels, c.hidden_size), packed=True,
                           when=lambda c: c.num_labels > 0),
                     Param(f"head{i}_b", f"{n}.bias", lambda c: (c.num_labels,), when=lambda c: c.num_labels > 0)]
        ignored |= {used + p.names[0] for p in POOLER}
    present = {k[len(used):] for k in keys if k.startswith(used)}
    has_pooler = not with_head and any(p.names[0] in present for p in POOLER)
    if has_pooler:
        model += POOLER
    relevant = (lambda k: True) if with_head or not used else (lambda k: k.startswith(used))
    result = WeightPlan(config, keys, shape_of, (model, LAYER, head), used, source,
                        ignored=ignored.__contains__, relevant=relevant)
    result.has_pooler, result.head = has_pooler, head_kind
    return result


def expected_base_tensors(config, num_prefix_tokens):
    """{name: shape} of the encoder (no prefix), pooler excluded (for tests that write checkpoints)."""
    from .table import expected_tensors
    assert num_prefix_tokens == num_prefix(config)
    return expected_tensors(config, embeddings(config), LAYER)

"""Random-weight CLIPModel / SiglipModel checkpoints built and saved by transformers, with tokenizer files
(made by test_tokenization's helpers) and an image processor config, in one folder: what a Hub two-tower
checkpoint holds."""
import os
import shutil

import torch
import transformers

from checkpoints import randomize_
from test_tokenization import clip_files, gemma_files

TEXT = dict(intermediate_size=52, num_hidden_layers=2, attn_implementation="eager")
VISION = dict(hidden_size=48, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=16)


def tokenizer_folders(root):
    """{"clip": folder, "siglip": folder} of tokenizer files (made once per test module)."""
    return {"clip": clip_files(os.path.join(str(root), "clip_tok")),
            "siglip": gemma_files(os.path.join(str(root), "siglip_tok"))}


def build_two_tower(root, family, tokenizer_folder, text=None, vision=None, seed=0, name=None, **top):
    """(folder, eager float32 transformers model, transformers tokenizer) of a fresh CLIPModel / SiglipModel."""
    path = os.path.join(str(root), name or f"{family}_{seed}")
    shutil.copytree(tokenizer_folder, path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ids = dict(vocab_size=len(tok), eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
               pad_token_id=tok.pad_token_id)
    text_cfg = {**TEXT, "hidden_size": 32, "num_attention_heads": 4, **ids,
                "max_position_embeddings": 77 if family == "clip" else 64, **(text or {})}
    text_cfg.pop("attn_implementation")
    vision_cfg = {**VISION, **(vision or {})}
    if family == "clip":
        config = transformers.CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, attn_implementation="eager",
                                         **dict({"projection_dim": 24}, **top))
        model_cls, proc = transformers.CLIPModel, transformers.CLIPImageProcessor
        size = dict(size={"shortest_edge": vision_cfg["image_size"]},
                    crop_size={"height": vision_cfg["image_size"], "width": vision_cfg["image_size"]})
    else:
        text_cfg.setdefault("projection_size", vision_cfg["hidden_size"])  # the embeddings share one space
        config = transformers.SiglipConfig(text_config=text_cfg, vision_config=vision_cfg, attn_implementation="eager",
                                           **top)
        model_cls, proc = transformers.SiglipModel, transformers.SiglipImageProcessor
        size = dict(size={"height": vision_cfg["image_size"], "width": vision_cfg["image_size"]})
    torch.manual_seed(seed)
    model = model_cls(config)
    randomize_(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        if family != "clip":
            model.logit_bias.fill_(-1.5)
    model.save_pretrained(path)
    proc(**size).save_pretrained(path)
    return path, model.eval(), tok

"""Train the small two-tower CLIP bundled with vitc (vitc/checkpoints/vitc-digits-clip) on scikit-learn's digits
with captions ("a photo of the digit seven", "handwritten 7", ...), for the offline zero-shot demo.

    python scripts/train_digits_clip.py       # writes vitc/checkpoints/vitc-digits-clip/

CPU only, deterministic (fixed seeds, deterministic torch, one thread), a few minutes. The tokenizer is a real
CLIP byte-level BPE trained here with the `tokenizers` library (scripts/clip_bpe.py) and saved by transformers'
CLIPTokenizer (tokenizer.json + tokenizer_config.json); the image processor is CLIP's (bilinear, mean/std 0.5). Training
images go through that saved processor. The held-out split is scripts/digits_data.py's.
Needs torch, transformers, tokenizers and scikit-learn (test/training dependencies only).
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_bpe  # noqa: E402
import digits_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "vitc", "checkpoints", "vitc-digits-clip")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["a photo of the digit {w}.", "a photo of the digit {w}", "handwritten {n}", "the number {w}",
             "a handwritten {w}", "digit {n}", "{w}", "a drawing of a {n}", "the digit {n}.", "a photo of a {w}."]
ZERO_SHOT_TEMPLATE = "a photo of the digit {}."
MAX_TOKENS = 16


def captions(label):
    return [t.format(w=WORDS[label], n=label) for t in TEMPLATES]


def make_tokenizer(folder):
    """The CLIP BPE trained on the captions, saved in folder and loaded back as transformers loads it."""
    corpus = [c for label in range(10) for c in captions(label)] * 5
    clip_bpe.train_clip_bpe(corpus, 600, MAX_TOKENS).save_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


def make_processor():
    side = digits_data.IMAGE_SIZE
    return transformers.CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                              resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                              do_convert_rgb=True)


def make_config(tok, args):
    text = dict(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                num_hidden_layers=args.layers, num_attention_heads=args.heads, max_position_embeddings=MAX_TOKENS,
                hidden_act="gelu", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(image_size=digits_data.IMAGE_SIZE, patch_size=4, num_channels=3, hidden_size=args.hidden,
                  intermediate_size=2 * args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                  hidden_act="gelu")
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=args.projection,
                                   attn_implementation="eager")


def pixel_values(processor, images):
    return torch.from_numpy(processor(images, return_tensors="np")["pixel_values"])


def text_inputs(tok, texts):
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.no_grad()
def zero_shot_accuracy(model, tok, processor, images, labels):
    text = model.get_text_features(**text_inputs(tok, [ZERO_SHOT_TEMPLATE.format(w) for w in WORDS]))
    image = model.get_image_features(pixel_values=pixel_values(processor, images))
    text, image = getattr(text, "pooler_output", text), getattr(image, "pooler_output", image)
    pred = (image / image.norm(dim=-1, keepdim=True)) @ (text / text.norm(dim=-1, keepdim=True)).T
    return float((pred.argmax(-1).numpy() == labels).mean())


def train(args, tok, processor):
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    rng = np.random.RandomState(args.seed)
    train_x, train_y, held_x, held_y, _ = digits_data.load_digits_split()
    model = transformers.CLIPModel(make_config(tok, args))
    model.train()
    steps = (len(train_y) + args.batch - 1) // args.batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # constant, then linear decay over the last third
        optimizer, lambda step: min(1.0, 3.0 * (1 - step / (args.epochs * steps))))
    start = time.time()
    for epoch in range(args.epochs):
        order = rng.permutation(len(train_y))
        # half the digits distorted (digits_data's training augmentation), half as rendered
        images = [digits_data.augment_digit(train_x[i], rng) if rng.uniform() < 0.5 else
                  digits_data.render_digit(train_x[i]) for i in order]
        pixels, labels = pixel_values(processor, images), torch.from_numpy(train_y[order])
        for s in range(steps):
            sl = slice(s * args.batch, (s + 1) * args.batch)
            # one caption per class: "handwritten {n}" during the first epochs (random captions from the start
            # leave both towers on the chance-level plateau), then drawn afresh each step among the templates
            texts = [captions(c)[2 if epoch < args.fixed_caption_epochs else rng.randint(len(TEMPLATES))]
                     for c in range(10)]
            out = model(pixel_values=pixels[sl], **text_inputs(tok, texts))
            loss = torch.nn.functional.cross_entropy(out.logits_per_image, labels[sl])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if (epoch + 1) % 2 == 0 or epoch + 1 == args.epochs:
            model.eval()
            acc = zero_shot_accuracy(model, tok, processor, [digits_data.render_digit(g) for g in held_x], held_y)
            model.train()
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  held-out zero-shot acc {acc:.4f}  "
                  f"{time.time() - start:.0f}s", flush=True)
    return model.eval(), (held_x, held_y), time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fixed-caption-epochs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--projection", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-dir", default=MODEL_DIR, help="output checkpoint folder (replaced)")
    args = parser.parse_args(argv)

    work = args.model_dir + ".tmp"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tok, processor = make_tokenizer(work), make_processor()
    model, (held_x, held_y), wall = train(args, tok, processor)
    acc = zero_shot_accuracy(model, tok, processor, [digits_data.render_digit(g) for g in held_x], held_y)
    model.save_pretrained(work)
    processor.save_pretrained(work)
    with open(os.path.join(work, "README.md"), "w") as f:
        f.write(f"# vitc-digits-clip\n\nA tiny CLIPModel (image and text towers: hidden {args.hidden}, {args.layers} "
                f"layers, {args.heads} heads; image 32x32 patch 4; projection {args.projection}) trained by "
                f"`python scripts/train_digits_clip.py` on scikit-learn's digits with captions such as "
                f"\"a photo of the digit seven\" and \"handwritten 7\" ({args.epochs} epochs, {wall:.0f} s on one "
                f"busy CPU thread).\n\nZero-shot accuracy on the {len(held_y)} held-out digits "
                f"(scripts/digits_data.py's split), labels zero..nine with the template "
                f"\"{ZERO_SHOT_TEMPLATE}\": {acc:.4f}.\n")
    shutil.rmtree(args.model_dir, ignore_errors=True)
    os.replace(work, args.model_dir)
    size = os.path.getsize(os.path.join(args.model_dir, "model.safetensors"))
    print(f"held-out zero-shot accuracy {acc:.4f} ({len(held_y)} digits); model.safetensors {size / 1024:.0f} KiB; "
          f"{wall:.0f} s -> {args.model_dir}")


if __name__ == "__main__":
    main()

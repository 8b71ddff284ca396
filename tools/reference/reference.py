#!/usr/bin/env python3
"""PyTorch + transformers reference of the detector in crates/inference.

Loads the same GGUF file (transformers dequantizes it to float32), tokenizes the same way (no BOS,
control-token text kept as plain text) and computes the Fast-DetectGPT analytic criterion exactly
as the Rust crate documents it: position t's logits predict token t+1, the first token is not
scored, statistics in float64.

  golden   texts file -> golden fixture (criterion, mean log-prob, mean entropy, token counts)
  tokens   strings file -> tokenizer-id fixture
  bench    forward + criterion at several lengths: median seconds, tokens/s, peak RSS

Regenerate the fixtures (not part of CI):
  /work/venv-ref/bin/python tools/reference/reference.py golden
  /work/venv-ref/bin/python tools/reference/reference.py tokens
"""

import argparse
import json
import math
import pathlib
import resource
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURES = ROOT / "crates" / "inference" / "tests" / "fixtures"
HERE = pathlib.Path(__file__).resolve().parent
# The Rust detector's default limit; golden texts longer than this are truncated the same way.
MAX_TOKENS = 512


def load_tokenizer(model):
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    # transformers' GGUF converter ignores `tokenizer.ggml.pre`. For `smollm` the original
    # SmolLM2 tokenizer (and llama.cpp) split every digit on its own before the byte-level regex;
    # without that split, whitespace before a digit groups differently ("\n\n1" gives "\n", "\n"
    # instead of "\n\n"). Restore the model's own pre-tokenizer so the reference is the tokenizer
    # the model was trained with.
    if gguf_metadata(model, "tokenizer.ggml.pre") == "smollm":
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    return tokenizer


def gguf_metadata(model, key):
    import gguf

    field = gguf.GGUFReader(str(model)).fields.get(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode()


def load_model(model):
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(model.parent), gguf_file=model.name, dtype=torch.float32)
    m.eval()
    return m


def encode(tokenizer, text):
    # split_special_tokens: `<|endoftext|>` typed in a text stays plain text, as in the Rust crate.
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def signals(model, ids, precise=True):
    """criterion, mean log-prob, mean entropy of a token sequence (len >= 2).

    precise: statistics in float64 (golden values); otherwise float32, as the published
    Fast-DetectGPT code does (benchmark).
    """
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
        if precise:
            logits = logits.to(torch.float64)
        logp = torch.log_softmax(logits, dim=-1)
        p = logp.exp()
        target = torch.tensor(ids[1:]).unsqueeze(-1)
        lp = logp.gather(-1, target).squeeze(-1)
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        criterion = (lp.sum() - mu.sum()) / var.sum().sqrt()
    return float(criterion), float(lp.mean()), float(-mu.mean())


def cmd_golden(args):
    texts = json.loads(pathlib.Path(args.texts).read_text())
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    out = []
    for item in texts:
        ids = encode(tokenizer, item["text"])
        scored = ids[:MAX_TOKENS]
        criterion, mean_lp, mean_entropy = signals(model, scored)
        out.append({
            "name": item["name"],
            "source": item["source"],
            "text": item["text"],
            "tokens": len(scored),
            "tokens_untruncated": len(ids),
            "truncated": len(ids) > MAX_TOKENS,
            "criterion": round(criterion, 6),
            "mean_log_prob": round(mean_lp, 6),
            "mean_entropy": round(mean_entropy, 6),
        })
        print(f"{item['name']:28} tokens {len(scored):4} criterion {criterion:8.4f}", file=sys.stderr)
    fixture = {
        "generated_by": "tools/reference/reference.py golden",
        "model_sha256_short": sha256_short(args.model),
        "max_tokens": MAX_TOKENS,
        "texts": out,
    }
    write_json(pathlib.Path(args.out), fixture)


def cmd_tokens(args):
    strings = json.loads(pathlib.Path(args.strings).read_text())
    tokenizer = load_tokenizer(args.model)
    out = [{"name": s["name"], "text": s["text"], "ids": encode(tokenizer, s["text"])} for s in strings]
    fixture = {"generated_by": "tools/reference/reference.py tokens", "strings": out}
    write_json(pathlib.Path(args.out), fixture)


def bench_ids(n):
    """The benchmark's token sequence, identical to the Rust bench's (crates/inference/benches)."""
    return [(i * 7919 + 13) % 49000 + 100 for i in range(n)]


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_bench(args):
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - started
    print(f"implementation pytorch  threads {args.threads}  load {load_s:.2f} s  "
          f"rss after load {peak_rss_mib():.0f} MiB  torch {torch.__version__}")
    print(f"{'tokens':>6} {'median_s':>9} {'tokens_per_s':>12} {'peak_rss_mib':>12}")
    for n in args.sizes:
        ids = bench_ids(n)
        signals(model, ids, precise=False)  # warm-up
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            signals(model, ids, precise=False)
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        print(f"{n:>6} {median:>9.4f} {n / median:>12.1f} {peak_rss_mib():>12.0f}", flush=True)


def sha256_short(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def write_json(path, data):
    """One top-level key per line and one list entry per line: small diffs, easy review."""
    lines = []
    for key, value in data.items():
        if isinstance(value, list):
            entries = ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{entries}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    json.loads(path.read_text())
    print(f"wrote {path}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=MODEL)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("golden")
    g.add_argument("--texts", default=HERE / "golden_texts.json")
    g.add_argument("--out", default=FIXTURES / "golden.json")
    t = sub.add_parser("tokens")
    t.add_argument("--strings", default=HERE / "tokenizer_strings.json")
    t.add_argument("--out", default=FIXTURES / "tokenizer_ids.json")
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 256, 512])
    args = parser.parse_args()
    {"golden": cmd_golden, "tokens": cmd_tokens, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    main()

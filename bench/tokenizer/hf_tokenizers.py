"""Hugging Face tokenizers (Rust) on one thread, on the texts bench/tokenizer/run.mjs --out wrote:
encode throughput (MB/s) and load time per tokenizer directory. Prints one JSON line each.
Usage: python3 hf_tokenizers.py TEXTS_JSONL TOKENIZER_DIR...  (on the GPU machine, which has it)"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402  (after the thread settings)


def main():
    texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
    total = sum(len(t.encode("utf-8")) for t in texts)
    for directory in sys.argv[2:]:
        start = time.perf_counter()
        tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        load_ms = (time.perf_counter() - start) * 1e3
        for t in texts[:200]:
            tokenizer.encode(t, add_special_tokens=False)
        start = time.perf_counter()
        encoded = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
        seconds = time.perf_counter() - start
        tokens = sum(len(ids) for ids in encoded)
        ids_hash = 0  # as bench/tokenizer/encode.cpp: equal hashes say the ids are identical
        for ids in encoded:
            for i in ids:
                ids_hash = (ids_hash * 1000003 + i + 1) % (1 << 64)
        print(json.dumps({"dir": directory, "load_ms": load_ms, "bytes": total, "tokens": tokens, "ids_hash": str(ids_hash),
                          "mb_per_s": total / seconds / 1e6}), flush=True)


if __name__ == "__main__":
    main()

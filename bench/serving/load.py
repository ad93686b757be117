#!/usr/bin/env python3
"""A serving workload driven over HTTP against any OpenAI-compatible server (nanoserve serve,
llama-server, vLLM): requests of random token ids with prompt and output lengths drawn uniformly
(seeded, so every server gets the same requests), `concurrency` in flight, each streamed with
ignore_eos so that it generates exactly its drawn length. Prints output tok/s and TTFT and time per
output token percentiles, as `nanoserve bench --input-len-range/--output-len-range` does in process.

  bench/serving/load.py --url http://127.0.0.1:8080 --num-requests 256 --concurrency 256 \\
      --input-len-range 100:1024 --output-len-range 100:1024 --vocab 128000

Python's standard library only: it runs on the GPU machine, which has no Node.
"""
import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse


def lengths(spec):
    low, high = (int(x) for x in spec.split(":"))
    if not 0 < low <= high:
        raise SystemExit(f"bad length range {spec}: expected A:B with 0 < A <= B")
    return low, high


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def served_model(url):
    """The first model the server lists (GET /v1/models): requests name it."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("GET", "/v1/models")
    models = json.loads(connection.getresponse().read())["data"]
    connection.close()
    return models[0]["id"]


def run_one(url, model, request, result):
    """Streams one completion; result gets ttft (s), tpot (s per token after the first) and tokens."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    body = json.dumps({"model": model, "prompt": request["prompt"], "max_tokens": request["output"],
                       "ignore_eos": True, "temperature": 0, "stream": True})
    start = time.perf_counter()
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    first = last = None
    chunks = 0
    for line in response:
        line = line.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        if not json.loads(line[5:]).get("choices"):
            continue  # a usage-only chunk
        last = time.perf_counter()
        chunks += 1
        if first is None:
            first = last
    connection.close()
    tokens = request["output"]
    result.update(ttft=first - start, tpot=(last - first) / max(1, tokens - 1), tokens=tokens, chunks=chunks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--num-requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--input-len-range", default="100:1024")
    parser.add_argument("--output-len-range", default="100:1024")
    parser.add_argument("--vocab", type=int, required=True, help="prompt token ids are drawn from [0, vocab)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    inputs, outputs = lengths(args.input_len_range), lengths(args.output_len_range)
    requests = []
    for _ in range(args.num_requests):
        prompt_len, output_len = rng.randint(*inputs), rng.randint(*outputs)
        requests.append({"prompt": [rng.randrange(args.vocab) for _ in range(prompt_len)], "output": output_len})
    model = served_model(args.url)
    results = [dict() for _ in requests]
    failures = []
    next_index = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(requests):
                return
            try:
                run_one(args.url, model, requests[i], results[i])
            except Exception as e:  # reported below: a failed request spoils the figures
                failures.append(f"request {i}: {e}")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    prompt_tokens = sum(len(r["prompt"]) for r in requests)
    output_tokens = sum(r["tokens"] for r in results)
    ttft = [r["ttft"] * 1000 for r in results]
    tpot = [r["tpot"] * 1000 for r in results]
    chunks = sum(r["chunks"] for r in results)  # a token each, unless a server joins or holds some back
    print(f"requests {len(requests)}, prompt tokens {prompt_tokens}, output tokens {output_tokens} "
          f"(in {chunks} streamed chunks), {wall:.1f} s")
    print(f"output tok/s {output_tokens / wall:.1f}")
    print(f"TTFT ms p50 / p99 {percentile(ttft, 50):.1f} {percentile(ttft, 99):.1f}")
    print(f"time per output token ms p50 / p99 {percentile(tpot, 50):.2f} {percentile(tpot, 99):.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: tokenisation for the re-ranker, and how much of the GIL it leaves to the thread
that launches the GPU's work, in one run.

Tokenises --pairs (query, passage) prompts (``Query: {q} Document: {d} Relevant:``, as
crossvariety.rerank.monot5 does) with an mT5 sentencepiece tokenizer trained on synthetic passages of
mMARCO-like length, four ways:
- transformers' tokenizer call (the project's path before crossvariety.neural.tokens);
- crossvariety.neural.tokens.FlatTokenizer on a thread (the Rust tokenizer, flat arrays);
- crossvariety.neural.tokens.Workers with 1 and --workers processes (ChunkTokenizer's chunks).
Each runs on a background thread, as in the re-ranker, while the main thread runs a pure-Python
loop standing in for the launching thread; printed: pairs/s, and the main loop's rate as a
fraction of its rate alone (1.0 = tokenisation takes nothing from the launching thread).

  python benchmarks/bench_tokenize.py                  # CPU, about a minute
  python benchmarks/bench_tokenize.py --pairs 200000 --workers 4 --out tokenize.json
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crossvariety.neural.batching import ChunkTokenizer
from crossvariety.neural.random_models import build_mt5, synthetic_passages
from crossvariety.rerank.monot5 import MAX_LENGTH, prompt_ids, prompt_tokenizer

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--pairs", type=int, default=60000)
parser.add_argument("--workers", type=int, default=2, help="worker processes of the last run")
parser.add_argument("--chunk", type=int, default=65536, help="the re-ranker's chunk size")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()

passages = synthetic_passages(args.pairs, seed=0)
queries = [" ".join(p.split()[:6]) for p in synthetic_passages(200, seed=1)]
pairs = [(queries[i % 200], p) for i, p in enumerate(passages)]
results = {"pairs": args.pairs, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def spin(stop):
    """The stand-in for the launching thread: pure-Python work, counted."""
    count = 0
    while not stop.is_set():
        for _ in range(1000):
            count += 1
    return count


def alongside(work):
    """(seconds of ``work`` on a thread, the main loop's iterations per second meanwhile)."""
    stop, out = threading.Event(), {}

    def run():
        start = time.time()
        work()
        out["seconds"] = time.time() - start
        stop.set()
    thread = threading.Thread(target=run)
    start = time.time()
    thread.start()
    count = spin(stop)
    thread.join()
    return out["seconds"], count / (time.time() - start)


with tempfile.TemporaryDirectory() as tmp:
    from transformers import AutoTokenizer
    model = build_mt5(Path(tmp) / "mt5", passages[:5000] + ["Query: Document: Relevant: yes no"],
                      vocab_size=8000)
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt = prompt_ids(tokenizer)

    def transformers_call(chunk):
        return [ids + prompt for ids in tokenizer(
            [f"Query: {q} Document: {d}" for q, d in chunk], add_special_tokens=False,
            truncation=True, max_length=MAX_LENGTH - len(prompt))["input_ids"]]

    stop = threading.Event()
    timer = threading.Timer(2.0, stop.set)
    start = time.time()
    timer.start()
    alone = spin(stop) / (time.time() - start)
    flat = prompt_tokenizer(tokenizer)
    runs = [("transformers_call", lambda: [transformers_call(pairs[s:s + args.chunk])
                                           for s in range(0, len(pairs), args.chunk)]),
            ("flat_thread", lambda: list(ChunkTokenizer(flat, args.chunk).chunks(pairs)))]
    pools = []
    for n in sorted({1, args.workers}):
        chunked = ChunkTokenizer(flat, args.chunk, workers=n)
        pools.append(chunked.pool())  # started before the timing, as a long job's are
        pools[-1](pairs[:100])
        runs.append((f"workers_{n}", lambda chunked=chunked: list(chunked.chunks(pairs))))
    for name, work in runs:
        seconds, rate = alongside(work)
        results[name] = {"pairs_per_s": args.pairs / seconds, "launcher_share": rate / alone}
        print(f"{name}: {args.pairs / seconds:,.0f} pairs/s; the launching thread keeps "
              f"{rate / alone:.0%} of its pace", flush=True)
    for pool in pools:
        pool.close()
if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1))
print(json.dumps(results, indent=1))

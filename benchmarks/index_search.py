# SPDX-License-Identifier: AGPL-3.0-only
"""Search latency of the index on 100,000 synthetic models: p50 and p95 per backend.

Fills a fresh index with synthetic models (names and card text from a small
vocabulary, tags, tasks, licenses, prices, ratings, sales, some lineage) straight
into the tables, then times a mix of searches: full text, filters, each sort, and
second pages through the keyset cursor. SQLite always; PostgreSQL too when Debian's
server binaries are installed (a throwaway cluster on a free loopback port, run as
the `postgres` user when this runs as root) or when --postgres-url is given.
Goal: p95 <= 20 ms on SQLite.

Usage: python benchmarks/index_search.py [--models 100000] [--queries 400] [--runs 1]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import insert

from mercato.chain.anvil import free_port
from mercato.index import Index, SearchQuery, Sort
from mercato.index import schema as s

WORDS = [
    "resnet",
    "bert",
    "vit",
    "whisper",
    "llama",
    "mobilenet",
    "efficient",
    "tiny",
    "large",
    "base",
    "small",
    "quantized",
    "vision",
    "speech",
    "text",
    "audio",
    "tabular",
    "detector",
    "segmenter",
    "classifier",
    "translator",
    "summarizer",
    "embedding",
    "sentiment",
    "forecast",
    "anomaly",
]
TASKS = (
    "image-classification",
    "text-classification",
    "translation",
    "object-detection",
    "automatic-speech-recognition",
    "tabular-regression",
)
LICENSES = ("MIT", "Apache-2.0", "CC-BY-4.0", "GPL-3.0-only")
# Card text draws from a larger vocabulary with Zipf-like frequencies, as prose does; the
# 25 name words above then stay rare enough in text to be meaningful search terms.
VOCABULARY = [f"w{i}" for i in range(5_000)]
ZIPF = [1 / (rank + 1) for rank in range(5_000)]
TAGS = ("vision", "nlp", "audio", "tabular", "onnx", "int8", "edge", "research")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """A temporary PostgreSQL cluster's URL, or None without Debian's server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir = Path(found[-1]).parent
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="mercato-pg-"))
    if prefix:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    run = [*prefix, str(bindir / "pg_ctl"), "-D", str(root / "data")]
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run,
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*run, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _fill(index: Index, count: int, rng: random.Random) -> None:
    creators = [f"0x{rng.getrandbits(160):040x}" for _ in range(500)]
    models, tags, lineage = [], [], []
    for model_id in range(1, count + 1):
        name = "-".join(rng.sample(WORDS, 2)) + f"-{model_id}"
        model_tags = rng.sample(TAGS, 2)
        rated = rng.random() < 0.6
        models.append(
            {
                "model_id": model_id,
                "creator": rng.choice(creators),
                "owner": rng.choice(creators),
                "created_block": model_id,
                "latest_version": 1,
                "metadata_version": 1,
                "searchable": True,
                "name": name,
                "license": rng.choice(LICENSES),
                "task": rng.choice(TASKS),
                "library": "onnx",
                "tags_text": " ".join(model_tags),
                "text": " ".join(rng.choices(VOCABULARY, weights=ZIPF, k=30)),
                "listed": True,
                "for_sale": True,
                "price": 0 if rng.random() < 0.2 else rng.randrange(1, 500) * 10**17,
                "license_duration": 0,
                "fee_bps": 0,
                "rating_milli": rng.randrange(1000, 5001) if rated else 0,
                "rating_count": rng.randrange(1, 50) if rated else 0,
                "purchases": rng.randrange(0, 1000),
            }
        )
        tags += [{"model_id": model_id, "tag": t} for t in model_tags]
        if model_id > 10 and rng.random() < 0.1:
            parent = rng.randrange(1, 50)
            row = {"model_id": model_id, "parent_id": parent, "position": 0}
            lineage.append(row | {"royalty_bps": 500, "block_number": model_id})
    with index.engine.begin() as conn:
        for start in range(0, count, 10_000):
            conn.execute(insert(s.Model), models[start : start + 10_000])
        conn.execute(insert(s.ModelTag), tags)
        conn.execute(insert(s.Lineage), lineage)
    if index.engine.dialect.name == "postgresql":
        with index.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with index.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _queries(rng: random.Random, n: int) -> list[SearchQuery]:
    out = []
    for _ in range(n):
        kind = rng.randrange(6)
        sort = rng.choice(list(Sort))
        if kind == 0:
            out.append(SearchQuery(text=rng.choice(WORDS), sort=sort))
        elif kind == 1:
            out.append(SearchQuery(text=" ".join(rng.sample(WORDS, 2)), task=rng.choice(TASKS)))
        elif kind == 2:
            out.append(SearchQuery(task=rng.choice(TASKS), license=rng.choice(LICENSES), sort=sort))
        elif kind == 3:
            out.append(SearchQuery(free_only=True, min_rating=rng.choice([3.0, 4.0]), sort=sort))
        elif kind == 4:
            low = rng.randrange(1, 200) * 10**17
            out.append(SearchQuery(min_price=low, max_price=low * 2, sort=Sort.PRICE_LOW))
        else:
            out.append(SearchQuery(tag=rng.choice(TAGS), derived_from=None, sort=sort))
    return out


def _measure(label: str, index: Index, queries: list[SearchQuery], runs: int = 1) -> None:
    figures = []
    for run in range(runs):
        times = []
        for query in queries:
            started = time.perf_counter()
            page = index.search(query)
            if page.next_cursor:  # and the second page, through the keyset cursor
                index.search(SearchQuery(**{**query.__dict__, "cursor": page.next_cursor}))
            times.append((time.perf_counter() - started) / (2 if page.next_cursor else 1))
        times.sort()
        p50, p95 = times[len(times) // 2] * 1000, times[int(len(times) * 0.95)] * 1000
        figures.append((p50, p95))
        name = label if runs == 1 else f"{label} #{run + 1}"
        print(
            f"  {name:<13} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   "
            f"(goal p95 <= 20 ms: {20 / p95:.2f}x)"
        )
    if runs > 1:  # the same queries again: the spread shows how noisy the machine is
        p50s, p95s = sorted(f[0] for f in figures), sorted(f[1] for f in figures)
        print(
            f"  {label:<13} p50 {p50s[0]:.2f}-{p50s[-1]:.2f} ms   "
            f"p95 {p95s[0]:.2f}-{p95s[-1]:.2f} ms over {runs} runs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use")
    parser.add_argument("--runs", type=int, default=1, help="time the query mix this many times")
    args = parser.parse_args()
    rng = random.Random(6)
    queries = _queries(rng, args.queries)
    print(f"{args.models} synthetic models, {args.queries} queries (each page timed, 20 per page):")
    with tempfile.TemporaryDirectory() as tmp:
        index = Index.open(data_dir=Path(tmp))
        _fill(index, args.models, random.Random(1))
        _measure("SQLite", index, queries, args.runs)
        index.close()
    with contextlib.ExitStack() as stack:
        url = args.postgres_url or stack.enter_context(throwaway_postgres())
        if url is None:
            print("  PostgreSQL  skipped: no server binaries (Debian package postgresql)")
            return
        index = Index.open(url)
        _fill(index, args.models, random.Random(1))
        _measure("PostgreSQL", index, queries, args.runs)
        index.close()


if __name__ == "__main__":
    main()

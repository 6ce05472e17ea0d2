# SPDX-License-Identifier: AGPL-3.0-only
"""Search latency of the index on 1,000,000 synthetic models: p50 and p95 per query kind.

Fills a fresh index with synthetic models (names and card text from a small
vocabulary, tags, tasks, licenses, prices, ratings, sales, some lineage) straight
into the tables in bulk (SQL inserts, or COPY on PostgreSQL; the chain is not
involved), then times each kind of search: a full-text word, one- and two-letter
prefixes (what a search box sends while someone types), filters, each sort with no
filter, and a next page through the keyset cursor. SQLite always; PostgreSQL too when
Debian's server binaries are installed (a throwaway cluster on a free loopback port,
run as the `postgres` user when this runs as root) or when --postgres-url is given.
Goal: p95 <= 20 ms for every kind, on both.

Filling a million models takes a few minutes per database; `--models 100000` is a
quick run.

Measured on 1,000,000 models (2 shared cores), p95 in ms, before -> after the prefix
index and plans of migration 0003: SQLite one-letter 28,000 -> 38, two-letter
225 -> 40, word 280 -> 50 (a word that is also a tag matches a third of the models
and, sorted by anything but the newest, all its matches are still gathered), filters
760 -> 24; PostgreSQL filters 228 -> 59 (two common words and a task: GIN's partial
match), every other kind under 10.

Then, p95 before -> after migration 0006 (longer prefixes searched as the words they
start, a common word probed per row and a rarer one collected), SQLite, same machine
less loaded: word 68 -> 15, one-letter 31 -> 11, two-letter 42 -> 12, word + tag 67 -> 19,
next page 32 -> 15. Still over 20 ms: SQLite filters 22-36 (a parent's ~2,000 children
read and sorted, 17-25 ms warm) and PostgreSQL two common words + a task, ~50 (the
~3,000 rows both words match are read from the table to check the task: a GIN index
holding the task too, by btree_gin or as a lexeme, did not measurably help on a loaded
machine). The figures move by 2-3x with the machine's load: `--keep DIR` fills once and
reuses the databases, so each change can be timed several times.

Then migrations 0007-0011, on the same kept million models, on a machine far busier
than above (load average 3-60 on 2 cores while other work ran), so each change was also
timed on its own queries, and the whole mix in CPU time (`--cpu`: this process plus the
PostgreSQL backend, whatever else runs; PostgreSQL's parallel workers not counted):
- A parent's ~2,000 children (`derived_from`): read in each sort's order off
  `lineage_sort_keys` (copies of the child's sort keys kept by triggers; 0007 SQLite,
  0011 PostgreSQL) instead of every child read and sorted; `ix_lineage_children`
  (0010). SQLite, those queries alone at load 6-7: p50 22-37 ms, worst 150 -> p50
  1.5-2.5, p95 7-8. PostgreSQL at load 7-19: median 52-60 -> 6-14 ms, 9,300 buffers
  -> 90 (it had scanned the whole lineage primary key in parallel).
- PostgreSQL, two words and a task: exact words of `ix_models_search_task` (0009: the
  words, `^` + the last word's first four letters, `=<task>`) instead of GIN gathering
  the last word's prefix and the table read for every match of both words. `resnet
  bert` in translation: index scan 35-50 -> 6-20 ms, 3,098 -> 527 rows read; `tiny
  vision` (a tag too, 3,546 models with the task): 125 -> 10-25 ms in the index, then
  those rows read. The throwaway cluster now gets `shared_buffers` = 2 GB and is
  prewarmed, as a server sized for the index would be (with the 128 MB default each
  row read is a system call: +15-80 ms for 3,500 rows under this load).
- The mix, p95 in CPU time, old search code (`c6207d5`) -> new, same databases:
  PostgreSQL filters 62-64 -> 16-20 (load 3-60; every other kind 2-13); SQLite filters
  25 -> 19-32 (load 6-60), every other kind 1-25 on both sides, moving with the load.
  Wall time p95 at load 4-15: PostgreSQL word, prefixes and sort 3-15 (up to 33 in a
  noisy run), filters 21-59, text+filter 21-62; SQLite 22-73 for every kind but sort.
Still over 20 ms: SQLite two common words and a task (~3,000 matches of the words, each
row read to check the task: 25-50 ms under load; probing a (task, model_id) index for
each match instead, migration 0012, was a third of the time alone but saved nothing
through search, the matches being counted first), and on PostgreSQL the same query's
3,500 rows when both words are common (10-25 ms in the index plus the rows); on this
machine no kind is under 20 ms in wall time at a load above ~8.

Then migration 0013 and the words' matches read once (SQLite), on the same kept million
models. Two words and a task is now a kind of its own, `words+task` (two name words, a
task, any sort; it was one query in six of `filters`, which is unchanged):
- SQLite holds each model's task as one more FTS5 term (U+E000 and the hex of the
  task's bytes), asked for with the words: FTS5 intersects the lists, and the ~500
  matches of two common name words in a task are the only ones counted and read. The
  full text's matches are read once (up to 3,001 ids, as one JSON array) and, when at
  most 3,000, drive the query as those ids, instead of being counted and then asked of
  FTS5 again. CPU time, the old search module and the new alternating on the same
  database (load 3.6-4.4), p50 / p95 in ms: words+task 18-19 / 27-30 -> 12-13 / 22-24;
  filters p95 18-20 -> 12-14; word 12-15 / 13-16 and text+filter 14-16 / 16-21 on both
  sides. The whole run, p95 before (load 0.9-2.9) -> after (load 3.4-3.9): words+task
  wall 41-92 -> 23-24, CPU 23-24 -> 23; filters wall 34-70 -> 15-17, CPU 17-18 -> 16-20;
  all kinds together wall 33-66 -> 16, CPU 18 -> 16.
- Still over 20 ms on SQLite, words+task at p95 (22-24 ms CPU): name words that are
  also common tags (`vision`, `audio`, `tabular`, each on a quarter of the models) and a
  task, ~3,500 matches: past the 3,000 that drive, so FTS5 collects them all (the
  task's list holds a sixth of the models; 10-18 ms) and the sort's index is walked.
  Driving 3,500 ids instead was measured at 35 ms (a row read and sorted per match).
- PostgreSQL unchanged, words+task p95 53-60 ms (wall at load 1-3, and CPU): a last
  word under four letters (`llama vit`) has no `^` marker in `ix_models_search_task`,
  so GIN gathers the prefix (23-30 ms) and the planner ANDs it with `ix_models_task`'s
  166,000 rows (20-30 ms); two words that are common tags read ~3,600 rows after the
  index (22-26 ms). Checking the task on the rows instead of ANDing its index took
  `llama vit` from 84 to 33 ms but `llama v` sorted by rating from 16 to 150, so it was
  not kept. Markers of three letters too (`^vit` beside four) would narrow a
  three-letter last word exactly, except for words whose fourth letter is not
  [a-z0-9]; not done.

Then migration 0014 (PostgreSQL) and matches read once past 3,000 (SQLite), on a fresh
million models, a quiet machine (load 0.6-1.3). words+task, CPU time of the same 100
queries, p50 / p95 in ms, before -> after:
- SQLite 8.4 / 16.8 -> 8.9 / 11.5: a full-text filter whose check collects every match
  (several words, or a word and a task) has them read up to 20,000 ids
  (`MATCHES_READ_MAX`), once; ~3,500-12,000 are checked as those ids along the sort's
  index (1.5-2 ms), where FTS5 intersected its lists a second time inside the query
  (8-14 ms: each pass decodes every entry of the lists, ~28 ns each, so FTS5's
  `detail=none` or `detail=column`, timed too, saved nothing). The newest order still
  reads no more than 3,001 (FTS5 walks its matches in that order and stops).
- PostgreSQL 10.3 / 45.7 -> 4.0 / 11.5: `ix_models_task_words` holds each model's
  words and its `^` markers of three and four letters per task (behind the task's md5),
  replacing `ix_models_search_task`. `tabular classifier` in a task: 11 ms in the index
  (lists of 310,000, 80,000 and 166,000 models intersected) -> a sixth of those lists;
  `speech vit`: 92 ms walking `ix_models_purchases` -> narrowed by `^vit`. Building
  the index on a million models (the migration) took 3.5 minutes.
- Whole run, wall time p95 (SQLite with the file in the OS cache; the first run after
  filling or copying it reads the disk and doubles every figure): SQLite word 12.6-13.2,
  1-letter 12.0-12.4, 2-letter 12.1-15.7, filters 9.5-11.7, sort 0.5-0.9, text+filter
  14.3-14.8, words+task 11.8-12.8, next page 13.8-14.2; PostgreSQL word 2.0, prefixes
  1.7, filters 12.8, sort 3.1, text+filter 12.2, words+task 11.8, next page 10.6. Every
  kind is under 20 ms on both. Still slow, about one query in fifty: two words that are
  both common tags (`vision audio`, ~12,000 matches in a task) take 19-20 ms on SQLite
  and 32 ms on PostgreSQL (the rows read after the index).
Search reports no totals (a page and the next page's cursor): the only counting is the
plan's, bounded at 3,001 (20,000 for matches a check would collect anyway).

Usage: python benchmarks/index_search.py [--models 1000000] [--queries 100] [--runs 1]
                                         [--postgres-url URL] [--only sqlite|postgresql]
                                         [--keep DIR] [--cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from sqlalchemy import func, select

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
CUMULATIVE_ZIPF = list(itertools.accumulate(1 / (rank + 1) for rank in range(5_000)))
TAGS = ("vision", "nlp", "audio", "tabular", "onnx", "int8", "edge", "research")


# PostgreSQL's cache for the throwaway cluster: the million models' table (1.4 GB) and
# its search indexes fit, as on a server sized for the index (PostgreSQL's advice is a
# quarter of the machine's memory; its 128 MB default is meant to start anywhere). With
# the default, every row a search reads is a system call into the OS cache: ~3,500 of
# them for two common words and a task.
SHARED_BUFFERS = "2GB"


@contextlib.contextmanager
def throwaway_postgres(keep: Path | None = None) -> Iterator[str | None]:
    """A temporary PostgreSQL cluster's URL, or None without Debian's server binaries.

    Args:
        keep: A folder to hold the cluster and reuse it on the next run (its models
            are not filled again); None removes it afterwards.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir = Path(found[-1]).parent
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if keep is None:
        root = Path(tempfile.mkdtemp(prefix="mercato-pg-"))
    else:
        root = keep / "postgresql"
        root.mkdir(parents=True, exist_ok=True)
    if prefix:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    run = [*prefix, str(bindir / "pg_ctl"), "-D", str(root / "data")]
    fresh = not (root / "data").exists()
    if fresh:
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
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c shared_buffers={SHARED_BUFFERS}",
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        if fresh:
            with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True) as c:
                c.execute("CREATE DATABASE bench")
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*run, "-m", "fast" if keep else "immediate", "stop"], capture_output=True)
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


_MODEL_COLUMNS = (
    "model_id",
    "creator",
    "owner",
    "created_block",
    "latest_version",
    "metadata_version",
    "searchable",
    "name",
    "license",
    "task",
    "library",
    "tags_text",
    "text",
    "listed",
    "for_sale",
    "price",
    "license_duration",
    "fee_bps",
    "rating_milli",
    "rating_count",
    "purchases",
)
_BATCH = 20_000


def _rows(
    start: int, stop: int, rng: random.Random, creators: list[str]
) -> tuple[list, list, list]:
    """Models `start` to `stop - 1` as `models`, `model_tags` and `lineage` rows."""
    models, tags, lineage = [], [], []
    for model_id in range(start, stop):
        model_tags = rng.sample(TAGS, 2)
        rated = rng.random() < 0.6
        price = 0 if rng.random() < 0.2 else rng.randrange(1, 500) * 10**17
        models.append(
            (
                model_id,
                rng.choice(creators),
                rng.choice(creators),
                model_id,
                1,
                1,
                True,
                "-".join(rng.sample(WORDS, 2)) + f"-{model_id}",
                rng.choice(LICENSES),
                rng.choice(TASKS),
                "onnx",
                " ".join(model_tags),
                " ".join(rng.choices(VOCABULARY, cum_weights=CUMULATIVE_ZIPF, k=30)),
                True,
                True,
                str(price).zfill(s.UINT_DIGITS),  # stored as the index stores uint256
                0,
                0,
                rng.randrange(1000, 5001) if rated else 0,
                rng.randrange(1, 50) if rated else 0,
                rng.randrange(0, 1000),
            )
        )
        tags += [(model_id, t) for t in model_tags]
        if model_id > 10 and rng.random() < 0.1:
            lineage.append((model_id, rng.randrange(1, 50), 0, 500, model_id))
    return models, tags, lineage


def _fill(index: Index, count: int, rng: random.Random) -> None:
    """Writes `count` synthetic models in bulk, then refreshes the planner's statistics."""
    creators = [f"0x{rng.getrandbits(160):040x}" for _ in range(500)]
    postgres = index.engine.dialect.name == "postgresql"
    raw = index.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start in range(1, count + 1, _BATCH):
            models, tags, lineage = _rows(start, min(start + _BATCH, count + 1), rng, creators)
            tables = (
                ("models", _MODEL_COLUMNS, models),
                ("model_tags", ("model_id", "tag"), tags),
                (
                    "lineage",
                    ("model_id", "parent_id", "position", "royalty_bps", "block_number"),
                    lineage,
                ),
            )
            for name, columns, rows in tables:
                if postgres:
                    with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(columns))
                    cursor.executemany(
                        f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", rows
                    )
            raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def _first_letters() -> list[str]:
    return sorted({w[0] for w in [*WORDS, *TAGS, *VOCABULARY]})


def _kinds(rng: random.Random) -> dict[str, Callable[[], SearchQuery]]:
    """Each query kind the benchmark reports, as a maker of random queries of that kind."""
    letters = _first_letters()
    sorts = list(Sort)

    def filters() -> SearchQuery:
        pick = rng.randrange(6)
        sort = rng.choice(sorts)
        if pick == 0:
            return SearchQuery(task=rng.choice(TASKS), license=rng.choice(LICENSES), sort=sort)
        if pick == 1:
            return SearchQuery(free_only=True, min_rating=rng.choice([3.0, 4.0]), sort=sort)
        if pick == 2:
            low = rng.randrange(1, 200) * 10**17
            return SearchQuery(min_price=low, max_price=low * 2, sort=rng.choice(sorts))
        if pick == 3:
            return SearchQuery(tag=rng.choice(TAGS), sort=sort)
        if pick == 4:
            return SearchQuery(derived_from=rng.randrange(1, 50), sort=sort)
        words = " ".join(rng.sample(WORDS, 2))
        return SearchQuery(text=words, task=rng.choice(TASKS), sort=sort)

    return {
        "word": lambda: SearchQuery(text=rng.choice(WORDS), sort=rng.choice(sorts)),
        "1-letter": lambda: SearchQuery(text=rng.choice(letters), sort=rng.choice(sorts)),
        "2-letter": lambda: SearchQuery(text=rng.choice(WORDS)[:2], sort=rng.choice(sorts)),
        "filters": filters,
        "sort": lambda: SearchQuery(sort=rng.choice(sorts)),
        "text+filter": lambda: SearchQuery(
            text=rng.choice(letters + WORDS), tag=rng.choice(TAGS), sort=rng.choice(sorts)
        ),
        # The slowest of `filters` on its own (last, so the kinds above draw the same
        # queries as before it was added).
        "words+task": lambda: SearchQuery(
            text=" ".join(rng.sample(WORDS, 2)), task=rng.choice(TASKS), sort=rng.choice(sorts)
        ),
    }


class Clock:
    """What a search costs: wall time, or CPU time (this process's, plus the PostgreSQL
    backend's when `backend` is its process id).

    On a shared machine the wall time of a search is its CPU time stretched by the
    other work that runs (2-3x at a load average of 6 on 2 cores). CPU time counts only
    the search's own work, so it shows what a change saves whatever the load; it leaves
    out waiting for the disk or the OS cache, and PostgreSQL's parallel workers.
    """

    def __init__(self, cpu: bool = False, backend: int | None = None) -> None:
        self.cpu = cpu
        self.schedstat = Path(f"/proc/{backend}/schedstat") if backend else None

    def now(self) -> float:
        if not self.cpu:
            return time.perf_counter()
        spent = time.process_time()
        if self.schedstat is not None:  # nanoseconds on a CPU, the first field
            spent += int(self.schedstat.read_text().split()[0]) / 1e9
        return spent


def _timed(index: Index, query: SearchQuery, clock: Clock) -> tuple[float, str | None]:
    started = clock.now()
    page = index.search(query)
    return clock.now() - started, page.next_cursor


def _measure(
    label: str, index: Index, queries: dict[str, list[SearchQuery]], runs: int, clock: Clock
) -> None:
    for run in range(runs):
        print(
            f"  {label}"
            + (f" #{run + 1}" if runs > 1 else "")
            + (" (CPU time)" if clock.cpu else "")
        )
        everything: list[float] = []
        pages: list[float] = []
        for kind, batch in queries.items():
            times = []
            for query in batch:
                elapsed, cursor = _timed(index, query, clock)
                times.append(elapsed)
                if cursor:  # the next page, through the keyset cursor
                    pages.append(
                        _timed(index, SearchQuery(**{**query.__dict__, "cursor": cursor}), clock)[0]
                    )
            everything += times
            _report(kind, times)
        _report("next page", pages)
        _report("all", everything + pages)


def _report(kind: str, times: list[float]) -> None:
    if not times:
        return
    times = sorted(times)
    p50, p95 = times[len(times) // 2] * 1000, times[int(len(times) * 0.95)] * 1000
    verdict = "ok" if p95 <= 20 else "SLOW"
    top = times[-1] * 1000
    print(f"    {kind:<12} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   max {top:8.2f} ms  {verdict}")


def _prewarm(index: Index) -> None:
    """Loads the models' table and indexes into PostgreSQL's cache (`pg_prewarm`), as a
    server that has been answering searches holds them; the throwaway cluster only."""
    with index.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.exec_driver_sql(
            "SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.relname = 'models' OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = 'models'::regclass)"
        )


def _run(
    label: str,
    index: Index,
    models: int,
    queries: dict[str, list[SearchQuery]],
    runs: int,
    prewarm: bool = False,
    cpu: bool = False,
) -> None:
    started = time.perf_counter()
    with index.engine.connect() as conn:
        present = conn.execute(select(func.count()).select_from(s.Model)).scalar_one()
    if present == 0:
        _fill(index, models, random.Random(1))
        print(f"  {label}: filled in {time.perf_counter() - started:.0f} s")
    elif present != models:
        raise SystemExit(f"{label} holds {present} models, not {models}: use another --keep")
    else:
        print(f"  {label}: {present} models kept from an earlier run")
    if prewarm:
        _prewarm(index)
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    backend = None
    if cpu and index.engine.dialect.name == "postgresql":
        # Searches run one at a time, so the pool holds this one connection.
        with index.engine.connect() as conn:
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    _measure(label, index, queries, runs, Clock(cpu, backend))
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--models", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100, help="queries per kind")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--runs", type=int, default=1, help="time the query mix this many times")
    parser.add_argument(
        "--keep",
        type=Path,
        help="a folder keeping the filled databases for the next run (migrated when opened)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="report CPU time (this process and the PostgreSQL backend), not wall time",
    )
    args = parser.parse_args()
    rng = random.Random(6)
    queries = {kind: [make() for _ in range(args.queries)] for kind, make in _kinds(rng).items()}
    print(f"{args.models} synthetic models, {args.queries} queries per kind, 20 per page:")
    if args.only != "postgresql":
        with contextlib.ExitStack() as stack:
            if args.keep:
                folder = args.keep / "sqlite"
                folder.mkdir(parents=True, exist_ok=True)
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            index = Index.open(data_dir=folder)
            _run("SQLite", index, args.models, queries, args.runs, cpu=args.cpu)
    if args.only == "sqlite":
        return
    with contextlib.ExitStack() as stack:
        url = args.postgres_url or stack.enter_context(throwaway_postgres(args.keep))
        if url is None:
            print("  PostgreSQL  skipped: no server binaries (Debian package postgresql)")
            return
        index = Index.open(url)
        _run("PostgreSQL", index, args.models, queries, args.runs, not args.postgres_url, args.cpu)


if __name__ == "__main__":
    main()

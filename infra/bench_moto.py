#!/usr/bin/env python3
"""Benchmark (not a test): does a claim-shaped TransactWriteItems stay cheap as tables grow?

Stock moto deep-copies every table a transaction touches, so its cost grows with the table;
infra/moto_server.py copies only the touched items. This measures the median and p95 latency of
one claim-shaped transaction (1 conditional update + 3 puts + 1 update across 2 tables) on an
empty table and again with --items codes loaded, and writes a Markdown report with a PASS/FAIL
line against the target: loaded median at most 2x the empty median.

    infra/bench_moto.py --endpoint http://127.0.0.1:PORT --items 100000 --out reports/moto-transact.md
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

try:
    import boto3
except ImportError:
    # boto3 comes with moto in the project's virtualenv; run there when started by another python.
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit("bench_moto.py needs boto3: run `infra/moto.sh install` first")

import argparse
import platform
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

TARGET_RATIO = 2.0
BATCH = 25


def client(endpoint: str):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_table(db, name: str) -> None:
    db.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
    )


def code_item(body: str) -> dict:
    return {
        "pk": {"S": f"CODE#{body}"},
        "sk": {"S": "CODE"},
        "state": {"S": "issued"},
        "points": {"N": "100"},
        "batch_id": {"S": "BENCH"},
    }


def load_codes(endpoint: str, table: str, bodies: list[str], threads: int) -> None:
    local = threading.local()

    def write(chunk: list[str]) -> None:
        if not hasattr(local, "db"):
            local.db = client(endpoint)
        requests = {table: [{"PutRequest": {"Item": code_item(b)}} for b in chunk]}
        while requests:
            requests = local.db.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}

    chunks = [bodies[i : i + BATCH] for i in range(0, len(bodies), BATCH)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, chunks))


def claim(db, codes: str, ledger: str, body: str, participant: str) -> None:
    entry = uuid.uuid4().hex
    db.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": codes,
                    "Key": {"pk": {"S": f"CODE#{body}"}, "sk": {"S": "CODE"}},
                    "UpdateExpression": "SET #state = :claimed, claimed_by = :p",
                    "ConditionExpression": "#state = :issued",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {
                        ":claimed": {"S": "claimed"},
                        ":issued": {"S": "issued"},
                        ":p": {"S": participant},
                    },
                }
            },
            {
                "Put": {
                    "TableName": ledger,
                    "Item": {
                        "pk": {"S": f"ACCOUNT#{participant}"},
                        "sk": {"S": f"ENTRY#{entry}"},
                        "points": {"N": "100"},
                        "code_tail": {"S": body[-4:]},
                    },
                }
            },
            {
                "Put": {
                    "TableName": ledger,
                    "Item": {"pk": {"S": f"OUTBOX#{entry}"}, "sk": {"S": "OUTBOX"}, "kind": {"S": "claimed"}},
                }
            },
            {
                "Put": {
                    "TableName": codes,
                    "Item": {"pk": {"S": f"ATTEMPTS#{participant}"}, "sk": {"S": f"ts#{entry}"}},
                }
            },
            {
                "Update": {
                    "TableName": ledger,
                    "Key": {"pk": {"S": f"ACCOUNT#{participant}"}, "sk": {"S": "BALANCE"}},
                    "UpdateExpression": "ADD balance :points",
                    "ExpressionAttributeValues": {":points": {"N": "100"}},
                }
            },
        ]
    )


def measure(db, codes: str, ledger: str, bodies: list[str]) -> list[float]:
    timings = []
    for i, body in enumerate(bodies):
        start = time.perf_counter()
        claim(db, codes, ledger, body, f"p{i % 50}")
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def summary(timings: list[float]) -> tuple[float, float]:
    return statistics.median(timings), statistics.quantiles(timings, n=20, method="inclusive")[18]


def run_phase(args, db, label: str, loaded: int) -> dict:
    suffix = uuid.uuid4().hex[:8]
    codes, ledger = f"bench-codes-{suffix}", f"bench-ledger-{suffix}"
    create_table(db, codes)
    create_table(db, ledger)
    claimed = [f"CLAIM{i:06d}" for i in range(args.warmup + args.samples)]
    filler = [f"FILL{i:08d}" for i in range(loaded)]
    started = time.perf_counter()
    load_codes(args.endpoint, codes, filler + claimed, args.threads)
    load_seconds = time.perf_counter() - started
    measure(db, codes, ledger, claimed[: args.warmup])
    median, p95 = summary(measure(db, codes, ledger, claimed[args.warmup :]))
    print(f"{label}: {loaded} filler items loaded in {load_seconds:.1f} s; median {median:.1f} ms, p95 {p95:.1f} ms")
    for table in (codes, ledger):
        db.delete_table(TableName=table)
    return {"label": label, "items": loaded, "load_s": load_seconds, "median": median, "p95": p95}


def report(args, empty: dict, loaded: dict) -> str:
    ratio = loaded["median"] / empty["median"]
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    rows = "\n".join(
        f"| {p['label']} | {p['items']:,} | {p['median']:.1f} | {p['p95']:.1f} | {p['load_s']:.1f} |"
        for p in (empty, loaded)
    )
    return f"""# moto: claim-shaped TransactWriteItems vs table size

Generated by `infra/bench_moto.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

- Emulator: {args.label} at `{args.endpoint}`
- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python {platform.python_version()}, boto3 {boto3.__version__}
- Transaction: 1 conditional update + 3 puts + 1 update across 2 tables (the shape of a code claim),
  {args.samples} sequential samples after {args.warmup} warm-up transactions, each claiming a different code.
- Loaded table: codes table pre-filled with BatchWriteItem ({args.threads} threads).

| table | items loaded | median (ms) | p95 (ms) | load time (s) |
|---|---:|---:|---:|---:|
{rows}

Ratio of medians (loaded / empty): **{ratio:.2f}x** (target: at most {TARGET_RATIO:g}x)

**{verdict}**
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--label", default="infra/moto_server.py", help="what runs at --endpoint, for the report")
    parser.add_argument("--out", default=str(REPO / "reports" / "moto-transact.md"))
    args = parser.parse_args()

    db = client(args.endpoint)
    empty = run_phase(args, db, "empty", 0)
    loaded = run_phase(args, db, "loaded", args.items)
    text = report(args, empty, loaded)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text.strip().splitlines()[-1], "->", out)


if __name__ == "__main__":
    main()

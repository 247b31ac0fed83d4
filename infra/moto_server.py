"""Local AWS emulator: moto's server with two fixes for the guarantees Loyalty Engine relies on.

Run it with the project's virtualenv (`infra/moto.sh start PORT` does):

    .venv/bin/python infra/moto_server.py -H 127.0.0.1 -p PORT

1. DynamoDB requests run one at a time. Stock `moto_server` serves requests on threads with no
   locking, and we measured concurrent conditional decrements letting extra updates through
   (a balance ending below its condition) and transactions failing with HTTP 500 "dictionary
   changed size during iteration" (see ../shared/notes/local-aws.md). DynamoDB guarantees that a
   condition and its write are atomic, and the claim path depends on it. A fully single-threaded
   server would be correct too, but then one SQS long poll blocks every other call, so only
   DynamoDB (and DynamoDB Streams, which reads the same tables) is serialised.

2. A cancelled TransactWriteItems restores only the items it touched. Moto deep-copies every
   table a transaction names before writing, so each claim costs time and memory in proportion
   to the table size (milliseconds on an empty table, over 100 ms at a few thousand items, and
   gigabytes of server memory over a run). Because of fix 1 nothing else can observe the
   intermediate state, so a journal of the touched items is enough for rollback.

The replacement is a copy of moto's own `transact_write_items` with the journal added, so it is
tied to the exact moto version: the launcher refuses to start if the version or the source of
the functions it relies on differ from what was reviewed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import io
import os
import signal
import sys
import threading
from typing import Any

import moto
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamShard, Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

PINNED_MOTO = "5.2.5"

# sha256 of the source of every moto function whose behaviour the journal must mirror: the
# function we replace, and every path through which a transaction writes table state. If moto
# changes any of them, the journal may miss state (for example a new index store), so stop.
REVIEWED_SOURCES = {
    DynamoDBBackend.transact_write_items: "81db2cb7d94e39c90b3a2077e1f4bb41a449c558ef9b1b1e2910fdaa39978ad4",
    DynamoDBBackend.update_item: "218984588dd689a5de81678ce11e6a40d05c91e7b6c21b44c4ed4122fe74aa9f",
    DynamoDBBackend.put_item: "f5d9a5042c77b89e5f4c88b5884f7966b9dccd95b8b04090ee9e07afc5eea675",
    DynamoDBBackend.delete_item: "083a4bb1af18f6fd2feef40195a4c9c803da66cb2cacd14f87916c6e76930ea5",
    DynamoDBBackend.get_item: "290b95c46b38bc5ac8079668e9c449bba9b6b26f4a2872d80ca262115023e189",
    Table.put_item: "de23933013ef842639046c19bcf7e418bce0474d810f6719368be4cedce11d47",
    Table.delete_item: "1594f7b07616c8cb8cdf0fbf58d6f54eeac83f25d7ac7b14e832a08e10efd8f9",
    Table.get_item: "b08e98fe37b7e5836afe03b010d637ef50df5dea6cbecd9cf8816eef326a21cd",
    StreamShard.add: "357dc6da267e5dd7d46e18ee25d14b232a98679677906a2f02e4d454d1f11e03",
}


def check_moto_is_the_reviewed_one() -> None:
    if moto.__version__ != PINNED_MOTO:
        sys.exit(
            f"moto_server.py: moto {moto.__version__} is installed but the transaction patch was "
            f"reviewed against {PINNED_MOTO}; run `infra/moto.sh install` or re-review the patch."
        )
    for function, expected in REVIEWED_SOURCES.items():
        actual = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()
        if actual != expected:
            sys.exit(
                f"moto_server.py: moto's {function.__qualname__} differs from the reviewed source "
                f"(sha256 {actual}); re-review the transaction patch before using this moto."
            )


class TouchedItems:
    """What a transaction changed, enough to undo it: the prior version of each touched item
    (None if it did not exist) and the length of each touched table's stream."""

    def __init__(self) -> None:
        # (table, hash key, range key, partition existed before, deep copy of the prior item)
        self.items: list[tuple[Table, Any, Any, bool, Any]] = []
        # (shard, its record list, length before); the list is kept because an event source
        # mapping may swap in a new one after forwarding records.
        self.streams: dict[int, tuple[StreamShard, list[Any], int]] = {}

    def remember(self, backend: DynamoDBBackend, table_name: str, key: dict[str, Any]) -> None:
        # Same lookups (and so the same errors) as the backend's get_item, but without its side
        # effect: Table.get_item creates an empty hash partition in the defaultdict on a miss.
        table = backend.get_table(table_name)
        hash_key, range_key = backend.get_keys_value(table, key)
        if table.has_range_key:
            existed = hash_key in table.items
            prior = table.items[hash_key].get(range_key) if existed else None
        else:
            existed = True
            prior = table.items.get(hash_key)
        # Updates mutate the stored Item in place, so the prior version must be a copy.
        self.items.append((table, hash_key, range_key, existed, copy.deepcopy(prior)))
        shard = table.stream_shard
        if shard is not None and id(shard) not in self.streams:
            self.streams[id(shard)] = (shard, shard.items, len(shard.items))

    def roll_back(self) -> None:
        # Newest first, so that when one item was remembered twice the oldest version wins.
        for table, hash_key, range_key, existed, prior in reversed(self.items):
            if table.has_range_key:
                partition = table.items[hash_key]
                if prior is None:
                    partition.pop(range_key, None)
                else:
                    partition[range_key] = prior
                if not existed and not partition:
                    del table.items[hash_key]
            elif prior is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = prior
        for shard, records, length in self.streams.values():
            del records[length:]
            shard.items = records


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's `transact_write_items`, with `TouchedItems` instead of whole-table copies.

    One deliberate difference: moto raises TransactWriteSingleOpException in the middle of the
    loop without rolling back the items already written; DynamoDB validates the request first
    and writes nothing, so every error escaping here rolls back.
    """
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    touched = TouchedItems()

    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str, str, dict[str, Any]] | tuple[None, None, None]] = []
    try:
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException

            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")

                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                expression_attribute_names = op.get("ExpressionAttributeNames")
                expression_attribute_values = op.get("ExpressionAttributeValues")
                return_values_on_condition_check_failure = op.get(
                    "ReturnValuesOnConditionCheckFailure"
                )

                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]

                check_unicity(table_name, key)

                touched.remember(self, table_name, key)
                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = get_filter_expression(
                        condition_expression,
                        expression_attribute_names,
                        expression_attribute_values,
                    )
                    if not condition_op.expr(current):
                        if return_values_on_condition_check_failure == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)

                if op_type == "Put":
                    self.put_item(
                        table_name,
                        op["Item"],
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values,
                    )
                elif op_type == "Delete":
                    self.delete_item(
                        table_name,
                        key,
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values,
                    )
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))  # type: ignore
            except Exception as e:  # noqa: BLE001 - moto reports any other failure per item
                errors.append((type(e).__name__, str(e), original_item))  # type: ignore

        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
    except BaseException:
        touched.roll_back()
        raise


class SerializeDynamoDB:
    """WSGI middleware: DynamoDB, DynamoDB Streams and moto's own admin API (reset, state dump,
    which walk the same tables) run under one lock; everything else stays concurrent."""

    LOCKED_TARGETS = ("DynamoDB_", "DynamoDBStreams_")

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def needs_lock(self, environ: dict[str, Any]) -> bool:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        return target.startswith(self.LOCKED_TARGETS) or environ.get("PATH_INFO", "").startswith(
            "/moto-api/"
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.needs_lock(environ):
            return self.app(environ, start_response)
        # Read the request off the socket before taking the lock, so a slow client cannot
        # hold up every other DynamoDB caller.
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = environ["wsgi.input"].read(int(length))
            environ["wsgi.input"] = io.BytesIO(body)
        with self.lock:
            response = self.app(environ, start_response)
            # Materialise the response under the lock: a lazy body would otherwise be computed
            # from the tables after the lock is released.
            try:
                chunks = list(response)
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
        return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()

    check_moto_is_the_reviewed_one()
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    # moto builds URLs it hands out (SQS queue URLs, for one) from MOTO_PORT, as moto_server does.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # TERM from `moto.sh stop` should end serve_forever cleanly, like moto_server does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    dispatcher = DomainDispatcherApplication(create_backend_app)
    dispatcher.debug = True  # type: ignore[attr-defined]  # as moto_server sets it
    run_simple(
        args.host,
        args.port,
        SerializeDynamoDB(dispatcher),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()

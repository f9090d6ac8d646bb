#!/usr/bin/env python3
"""Smoke test of the Python SDK that openapi-python-client generates from
openapi/openapi.json: every kind of call against a live kvstore server, each answer checked.

    smoke.py --url http://127.0.0.1:8080 --sdk DIR [--topic NAME]

DIR holds the generated package `kvstore_client`. Run by tests/integration/sdk.rs, which
starts the broker and the server and generates the SDK. Prints one line per check; exits 1 at
the first that fails.
"""

from __future__ import annotations

import argparse
import io
import sys


class CheckFailed(Exception):
    """A check did not hold."""


def check(condition: bool, what: str, got: object = None) -> None:
    if not condition:
        raise CheckFailed(f"{what}: got {got!r}")
    print(f"ok    {what}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--sdk", required=True, help="the folder holding kvstore_client")
    parser.add_argument("--topic", default="sdk-smoke")
    args = parser.parse_args()
    sys.path.insert(0, args.sdk)
    try:
        run(args.url, args.topic)
    except CheckFailed as failure:
        print(f"FAIL  {failure}", flush=True)
        return 1
    return 0


def run(url: str, topic: str) -> None:
    import httpx
    from kvstore_client import Client
    from kvstore_client.api.health import get_readiness
    from kvstore_client.api.keys import delete_key, get_key, put_key, scan_range, write_batch
    from kvstore_client.api.topics import list_topics
    from kvstore_client.models import (
        BatchDelete,
        BatchDeleteOp,
        BatchPut,
        BatchPutOp,
        BatchRequest,
        BatchResponse,
        ErrorResponse,
        ConsistencyLevel,
        RangeResponse,
        TopicsResponse,
        ValueEncoding,
        WriteResponse,
    )
    from kvstore_client.types import UNSET, File

    client = Client(base_url=url, raise_on_unexpected_status=True, timeout=httpx.Timeout(30.0))

    ready = get_readiness.sync(client=client)
    check(getattr(ready, "status", None) == "ready", "readyz: ready", ready)

    # put: the body is the value's bytes.
    written = put_key.sync(topic, "user/1", client=client, body=File(payload=io.BytesIO(b'{"name":"Ada"}')))
    check(isinstance(written, WriteResponse), "put: a WriteResponse", written)
    check((written.topic, written.key, written.offset) == (topic, "user/1", 0), "put: topic, key, offset 0", written)
    binary = bytes([0, 1, 0xFF])
    odd_key = "a/b c?d#e%f"
    written = put_key.sync(topic, odd_key, client=client, body=File(payload=io.BytesIO(binary)))
    check(isinstance(written, WriteResponse) and written.key == odd_key, "put: a key with / ? # % and a space", written)

    # get: the value's bytes (a File), with the content type written and its version in
    # X-Kv-Offset.
    got = get_key.sync_detailed(topic, "user/1", client=client)
    check(got.status_code == 200, "get: 200", got.status_code)
    check(isinstance(got.parsed, File) and got.parsed.payload.read() == b'{"name":"Ada"}',
          "get: the bytes written", got.content)
    check(got.headers.get("content-type") == "application/octet-stream", "get: the content type written",
          dict(got.headers))
    check(got.headers.get("x-kv-offset") == "0", "get: X-Kv-Offset", dict(got.headers))
    got = get_key.sync(topic, odd_key, client=client)
    check(isinstance(got, File) and got.payload.read() == binary, "get: binary bytes under the odd key", got)

    # Conditional put: If-Match with the version read writes; the same version again is
    # refused with 412, naming the key's current version. A conditional write is a
    # transaction, whose commit marker takes an offset (3); the refused one leaves an aborted
    # record and its marker (4, 5).
    body = File(payload=io.BytesIO(b'{"name":"Ada L."}'))
    cas = put_key.sync_detailed(topic, "user/1", client=client, body=body, if_match='"0"')
    check(cas.status_code == 200 and isinstance(cas.parsed, WriteResponse) and cas.parsed.offset == 2,
          "put If-Match: written at offset 2", cas.content)
    body = File(payload=io.BytesIO(b"stale"))
    stale = put_key.sync_detailed(topic, "user/1", client=client, body=body, if_match='"0"')
    check(stale.status_code == 412 and isinstance(stale.parsed, ErrorResponse)
          and stale.parsed.error.code == "precondition_failed", "put If-Match stale: 412", stale.content)
    check(stale.parsed.error.failed[0].current_version == 2, "412 names the current version", stale.content)
    got = get_key.sync_detailed(topic, "user/1", client=client, consistency=ConsistencyLevel.STRONG, min_offset=2)
    check(got.status_code == 200 and got.parsed.payload.read() == b'{"name":"Ada L."}',
          "get consistency=strong and min_offset: the conditional write", got.content)
    check(int(got.headers.get("x-kv-applied-offset", "0")) >= 3, "get: X-Kv-Applied-Offset", dict(got.headers))

    # delete, then the key is gone.
    deleted = delete_key.sync(topic, "user/1", client=client)
    check(isinstance(deleted, WriteResponse) and deleted.offset == 6, "delete: offset 6", deleted)
    gone = get_key.sync_detailed(topic, "user/1", client=client)
    check(gone.status_code == 404, "get after delete: 404", gone.status_code)
    check(isinstance(gone.parsed, ErrorResponse) and gone.parsed.error.code == "key_not_found",
          "get after delete: key_not_found", gone.parsed)

    # batch: puts in every encoding, and a delete.
    ops: list[BatchPut | BatchDelete] = [
        BatchPut(key=f"page/{i}", value={"n": i}, op=BatchPutOp.PUT) for i in range(5)
    ]
    ops.append(BatchPut(key="page/5", value="text", op=BatchPutOp.PUT))
    ops.append(BatchPut(key="page/6", value="AAH/", encoding=ValueEncoding.BASE64, op=BatchPutOp.PUT))
    ops.append(BatchDelete(key=odd_key, op=BatchDeleteOp.DELETE))
    batch = write_batch.sync(topic, client=client, body=BatchRequest(ops=ops))
    check(isinstance(batch, BatchResponse), "batch: a BatchResponse", batch)
    check(len(batch.results) == len(ops) and batch.offset == 7 + len(ops) - 1,
          "batch: one result per operation, last offset", batch)

    # range with paging: pages of 2, followed by next_cursor, see every key once, in order.
    keys, values, pages = [], {}, 0
    cursor = UNSET
    while True:
        page = scan_range.sync(topic, client=client, prefix="page/", limit=2, cursor=cursor)
        check(isinstance(page, RangeResponse) and len(page.items) <= 2, f"range: page {pages + 1} of at most 2", page)
        pages += 1
        for item in page.items:
            keys.append(item.key)
            values[item.key] = (item.value, item.encoding)
        if not isinstance(page.next_cursor, str):
            break
        cursor = page.next_cursor
    check(keys == [f"page/{i}" for i in range(7)], "range: every key once, in order", keys)
    check(pages == 4, "range: 4 pages", pages)
    check(values["page/3"] == ({"n": 3}, ValueEncoding.JSON), "range: a JSON value", values["page/3"])
    check(values["page/5"] == ("text", ValueEncoding.TEXT), "range: a text value", values["page/5"])
    check(values["page/6"] == ("AAH/", ValueEncoding.BASE64), "range: a binary value", values["page/6"])

    # topics: this one, with its live keys.
    topics = list_topics.sync(client=client)
    check(isinstance(topics, TopicsResponse), "topics: a TopicsResponse", topics)
    mine = [t for t in topics.topics if t.name == topic]
    check(len(mine) == 1 and mine[0].keys == 7 and mine[0].state == "ready", "topics: 7 keys, ready", mine)

    # errors come back as ErrorResponse with the documented status and code.
    missing = scan_range.sync_detailed("no-such-topic", client=client)
    check(missing.status_code == 404 and isinstance(missing.parsed, ErrorResponse)
          and missing.parsed.error.code == "topic_not_found", "error: range of a missing topic", missing.parsed)
    bad = write_batch.sync_detailed(topic, client=client, body=BatchRequest(ops=[
        BatchPut(key="k", value=5, encoding=ValueEncoding.BASE64, op=BatchPutOp.PUT),
    ]))
    check(bad.status_code == 422 and isinstance(bad.parsed, ErrorResponse)
          and bad.parsed.error.code == "invalid_request", "error: a base64 value that is not a string", bad.parsed)
    long_key = put_key.sync_detailed(topic, "k" * 1025, client=client, body=File(payload=io.BytesIO(b"v")))
    check(long_key.status_code == 413 and long_key.parsed.error.code == "key_too_large",
          "error: a key over 1024 bytes", long_key.parsed)
    after = list_topics.sync(client=client)
    check([t.keys for t in after.topics if t.name == topic] == [7], "errors wrote nothing", after)


if __name__ == "__main__":
    sys.exit(main())

// Smoke test of the TypeScript client: types from openapi-typescript (generated/schema.d.ts),
// requests through openapi-fetch. Every kind of call against a live kvstore, each answer checked.
//
//   node dist/smoke.js URL [TOPIC]
//
// Prints one line per check; exits 1 at the first that fails. Run by scripts/check-sdks.sh.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type BatchOperation = components["schemas"]["BatchOperation"];

class CheckFailed extends Error {}

function check(condition: boolean, what: string, got?: unknown): void {
  if (!condition) {
    throw new CheckFailed(`${what}: got ${JSON.stringify(got)}`);
  }
  console.log(`ok    ${what}`);
}

const [url, topic = "sdk-typescript"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node dist/smoke.js URL [TOPIC]");
  process.exit(2);
}

const client = createClient<paths>({ baseUrl: url });
const keyPath = (key: string) => ({ params: { path: { topic, key } } });
// A PUT's body is the value's raw bytes. openapi-fetch would send it as JSON, and says
// `Content-Type: application/json` unless told otherwise: send it as is, as bytes.
const raw = {
  bodySerializer: (body?: string) => body,
  headers: { "Content-Type": "application/octet-stream" },
};

async function run(): Promise<void> {
  const ready = await client.GET("/readyz");
  check(ready.data?.status === "ready", "readyz: ready", ready.data);

  // put: the body is the value's bytes, its Content-Type stored with it.
  const written = await client.PUT("/v1/{topic}/keys/{key}", {
    ...keyPath("user/1"),
    body: '{"name":"Ada"}',
    ...raw,
    headers: { "Content-Type": "application/json" },
  });
  check(
    written.data?.topic === topic && written.data.key === "user/1" && written.data.offset === 0,
    "put: topic, key, offset 0",
    written.data,
  );
  const binary = new Uint8Array([0, 1, 0xff]);
  const oddKey = "a/b c?d#e%f";
  const odd = await client.PUT("/v1/{topic}/keys/{key}", {
    ...keyPath(oddKey),
    body: "",
    ...raw,
    bodySerializer: () => binary,
  });
  check(odd.data?.key === oddKey, "put: a key with / ? # % and a space", odd.data ?? odd.error);

  // get: the raw value with its content type, its version in X-Kv-Offset.
  const got = await client.GET("/v1/{topic}/keys/{key}", { ...keyPath("user/1"), parseAs: "text" });
  check(got.response.status === 200, "get: 200", got.response.status);
  check(got.data === '{"name":"Ada"}', "get: the bytes written", got.data);
  check(got.response.headers.get("content-type") === "application/json", "get: the content type written",
    got.response.headers.get("content-type"));
  check(got.response.headers.get("x-kv-offset") === "0", "get: X-Kv-Offset",
    got.response.headers.get("x-kv-offset"));
  const gotOdd = await client.GET("/v1/{topic}/keys/{key}", { ...keyPath(oddKey), parseAs: "arrayBuffer" });
  check(Buffer.from(gotOdd.data ?? new ArrayBuffer(0)).equals(binary), "get: binary bytes under the odd key",
    gotOdd.data && [...new Uint8Array(gotOdd.data)]);
  check(gotOdd.response.headers.get("content-type") === "application/octet-stream",
    "get: application/octet-stream when none was given", gotOdd.response.headers.get("content-type"));

  // Conditional put: If-Match with the version read writes; the same version again is
  // refused with 412, naming the key's current version. A conditional write is a
  // transaction, whose commit marker takes an offset (3); the refused one leaves an aborted
  // record and its marker (4, 5).
  const ifMatch = { params: { path: { topic, key: "user/1" }, header: { "If-Match": '"0"' } } };
  const cas = await client.PUT("/v1/{topic}/keys/{key}", { ...ifMatch, body: '{"name":"Ada L."}', ...raw });
  check(cas.response.status === 200 && cas.data?.offset === 2, "put If-Match: written at offset 2",
    cas.data ?? cas.error);
  const stale = await client.PUT("/v1/{topic}/keys/{key}", { ...ifMatch, body: "stale", ...raw });
  check(stale.response.status === 412 && stale.error?.error.code === "precondition_failed",
    "put If-Match stale: 412", stale.error);
  check(stale.error?.error.failed?.[0]?.current_version === 2, "412 names the current version", stale.error);
  const strong = await client.GET("/v1/{topic}/keys/{key}", {
    params: { path: { topic, key: "user/1" }, query: { consistency: "strong", min_offset: 2 } },
    parseAs: "text",
  });
  check(strong.response.status === 200 && strong.data === '{"name":"Ada L."}',
    "get consistency=strong and min_offset: the conditional write", strong.data ?? strong.error);
  check(Number(strong.response.headers.get("x-kv-applied-offset")) >= 3, "get: X-Kv-Applied-Offset",
    strong.response.headers.get("x-kv-applied-offset"));

  // delete, then the key is gone.
  const deleted = await client.DELETE("/v1/{topic}/keys/{key}", keyPath("user/1"));
  check(deleted.data?.offset === 6, "delete: offset 6", deleted.data);
  const gone = await client.GET("/v1/{topic}/keys/{key}", { ...keyPath("user/1"), parseAs: "text" });
  check(gone.response.status === 404, "get after delete: 404", gone.response.status);
  // `parseAs` applies to success bodies only: an error body is parsed as JSON.
  check(gone.error?.error.code === "key_not_found", "get after delete: key_not_found", gone.error);

  // batch: puts in every encoding, and a delete.
  const ops: BatchOperation[] = [];
  for (let i = 0; i < 5; i++) {
    ops.push({ op: "put", key: `page/${i}`, value: { n: i } });
  }
  ops.push({ op: "put", key: "page/5", value: "text" });
  ops.push({ op: "put", key: "page/6", value: "AAH/", encoding: "base64" });
  ops.push({ op: "delete", key: oddKey });
  const batch = await client.POST("/v1/{topic}/batch", { params: { path: { topic } }, body: { ops } });
  check(
    batch.data?.results.length === ops.length && batch.data.offset === 7 + ops.length - 1,
    "batch: one result per operation, last offset",
    batch.data ?? batch.error,
  );

  // range with paging: pages of 2, followed by next_cursor, see every key once, in order.
  const keys: string[] = [];
  const values = new Map<string, [unknown, string]>();
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await client.GET("/v1/{topic}/range", {
      params: { path: { topic }, query: { prefix: "page/", limit: 2, cursor } },
    });
    check(page.data !== undefined && page.data.items.length <= 2, `range: page ${pages + 1} of at most 2`,
      page.data ?? page.error);
    pages++;
    for (const item of page.data?.items ?? []) {
      keys.push(item.key);
      values.set(item.key, [item.value, item.encoding]);
    }
    cursor = page.data?.next_cursor ?? undefined;
  } while (cursor !== undefined);
  check(JSON.stringify(keys) === JSON.stringify([0, 1, 2, 3, 4, 5, 6].map((i) => `page/${i}`)),
    "range: every key once, in order", keys);
  check(pages === 4, "range: 4 pages", pages);
  check(JSON.stringify(values.get("page/3")) === JSON.stringify([{ n: 3 }, "json"]), "range: a JSON value",
    values.get("page/3"));
  check(JSON.stringify(values.get("page/5")) === JSON.stringify(["text", "text"]), "range: a text value",
    values.get("page/5"));
  check(JSON.stringify(values.get("page/6")) === JSON.stringify(["AAH/", "base64"]), "range: a binary value",
    values.get("page/6"));

  // topics: this one, with its live keys.
  const topics = await client.GET("/v1/topics");
  const mine = topics.data?.topics.filter((t) => t.name === topic) ?? [];
  check(mine.length === 1 && mine[0].keys === 7 && mine[0].state === "ready", "topics: 7 keys, ready", mine);

  // errors come back as ErrorResponse with the documented status and code.
  const missing = await client.GET("/v1/{topic}/range", { params: { path: { topic: "no-such-topic" } } });
  check(missing.response.status === 404 && missing.error?.error.code === "topic_not_found",
    "error: range of a missing topic", missing.error);
  const bad = await client.POST("/v1/{topic}/batch", {
    params: { path: { topic } },
    body: { ops: [{ op: "put", key: "k", value: 5, encoding: "base64" }] },
  });
  check(bad.response.status === 422 && bad.error?.error.code === "invalid_request",
    "error: a base64 value that is not a string", bad.error);
  const longKey = await client.PUT("/v1/{topic}/keys/{key}", { ...keyPath("k".repeat(1025)), body: "v", ...raw });
  check(longKey.response.status === 413 && longKey.error?.error.code === "key_too_large",
    "error: a key over 1024 bytes", longKey.error);
  const after = await client.GET("/v1/topics");
  check(after.data?.topics.find((t) => t.name === topic)?.keys === 7, "errors wrote nothing", after.data);
}

try {
  await run();
} catch (failure) {
  console.log(`FAIL  ${failure instanceof Error ? failure.message : String(failure)}`);
  process.exit(1);
}

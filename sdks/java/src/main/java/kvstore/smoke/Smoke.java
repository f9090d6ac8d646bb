package kvstore.smoke;

import io.kvstore.client.ApiClient;
import io.kvstore.client.ApiException;
import io.kvstore.client.ApiResponse;
import io.kvstore.client.api.HealthApi;
import io.kvstore.client.api.KeysApi;
import io.kvstore.client.api.TopicsApi;
import io.kvstore.client.model.BatchDelete;
import io.kvstore.client.model.BatchOperation;
import io.kvstore.client.model.BatchPut;
import io.kvstore.client.model.BatchRequest;
import io.kvstore.client.model.BatchResponse;
import io.kvstore.client.model.ConsistencyLevel;
import io.kvstore.client.model.ErrorResponse;
import io.kvstore.client.model.FailedCondition;
import io.kvstore.client.model.RangeItem;
import io.kvstore.client.model.RangeResponse;
import io.kvstore.client.model.TopicSummary;
import io.kvstore.client.model.ValueEncoding;
import io.kvstore.client.model.WriteResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Smoke test of the Java client that openapi-generator generates from openapi/openapi.json:
 * every kind of call against a live kvstore, each answer checked.
 *
 * <pre>java -cp ... kvstore.smoke.Smoke URL [TOPIC]</pre>
 *
 * Prints one line per check; exits 1 at the first that fails. Run by scripts/check-sdks.sh.
 */
public final class Smoke {
  /** A check did not hold. */
  static final class CheckFailed extends Exception {
    CheckFailed(String message) {
      super(message);
    }
  }

  static void check(boolean condition, String what, Object got) throws CheckFailed {
    if (!condition) {
      throw new CheckFailed(what + ": got " + got);
    }
    System.out.println("ok    " + what);
  }

  /** The error code of a failed call, from its ErrorResponse body. */
  static String errorCode(ApiException failure) throws IOException {
    return ErrorResponse.fromJson(failure.getResponseBody()).getError().getCode();
  }

  /** A call that should fail. */
  interface Call {
    void run() throws ApiException;
  }

  /**
   * Checks that {@code call} fails with HTTP {@code status} and the error code {@code code}; returns
   * the failure.
   */
  static ApiException checkError(Call call, int status, String code, String what) throws CheckFailed, IOException {
    try {
      call.run();
    } catch (ApiException failure) {
      check(
          failure.getCode() == status && code.equals(errorCode(failure)),
          what,
          failure.getCode() + " " + failure.getResponseBody());
      return failure;
    }
    throw new CheckFailed(what + ": got success");
  }

  /** A response header (OkHttp gives their names in lower case). */
  static String header(ApiResponse<?> response, String name) {
    List<String> values = response.getHeaders().get(name.toLowerCase());
    return values == null || values.isEmpty() ? null : values.get(0);
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: kvstore.smoke.Smoke URL [TOPIC]");
      System.exit(2);
    }
    String topic = args.length > 1 ? args[1] : "sdk-java";
    try {
      run(args[0], topic);
    } catch (CheckFailed failure) {
      System.out.println("FAIL  " + failure.getMessage());
      System.exit(1);
    }
  }

  static void run(String url, String topic) throws Exception {
    ApiClient client = new ApiClient().setBasePath(url);
    KeysApi keys = new KeysApi(client);

    String status = new HealthApi(client).getReadiness().getStatus();
    check("ready".equals(status), "readyz: ready", status);

    // put: the body is the value's bytes. The generated client always sends them as
    // application/octet-stream (the one content type the document names for a PUT).
    byte[] ada = "{\"name\":\"Ada\"}".getBytes(StandardCharsets.UTF_8);
    WriteResponse written = keys.putKey(topic, "user/1", null, null, ada);
    check(
        topic.equals(written.getTopic()) && "user/1".equals(written.getKey()) && written.getOffset() == 0,
        "put: topic, key, offset 0",
        written);
    byte[] binary = {0, 1, (byte) 0xff};
    String oddKey = "a/b c?d#e%f";
    written = keys.putKey(topic, oddKey, null, null, binary);
    check(oddKey.equals(written.getKey()), "put: a key with / ? # % and a space", written);

    // get: the raw value with its content type, its version in X-Kv-Offset.
    ApiResponse<byte[]> got = keys.getKeyWithHttpInfo(topic, "user/1", null, null, null, null, null);
    check(got.getStatusCode() == 200, "get: 200", got.getStatusCode());
    check(Arrays.equals(got.getData(), ada), "get: the bytes written", new String(got.getData()));
    check(
        "application/octet-stream".equals(header(got, "Content-Type")),
        "get: the content type written",
        got.getHeaders());
    check("0".equals(header(got, "X-Kv-Offset")), "get: X-Kv-Offset", got.getHeaders());
    check(
        Arrays.equals(keys.getKey(topic, oddKey, null, null, null, null, null), binary),
        "get: binary bytes under the odd key",
        Arrays.toString(keys.getKey(topic, oddKey, null, null, null, null, null)));

    // Conditional put: If-Match with the version read writes; the same version again is
    // refused with 412, naming the key's current version. A conditional write is a
    // transaction, whose commit marker takes an offset (3); the refused one leaves an aborted
    // record and its marker (4, 5).
    byte[] adaL = "{\"name\":\"Ada L.\"}".getBytes(StandardCharsets.UTF_8);
    written = keys.putKey(topic, "user/1", "\"0\"", null, adaL);
    check(written.getOffset() == 2, "put If-Match: written at offset 2", written);
    ApiException stale = checkError(
        () -> keys.putKey(topic, "user/1", "\"0\"", null, "stale".getBytes(StandardCharsets.UTF_8)),
        412,
        "precondition_failed",
        "put If-Match stale: 412");
    List<FailedCondition> failed = ErrorResponse.fromJson(stale.getResponseBody()).getError().getFailed();
    check(
        failed != null && !failed.isEmpty() && Long.valueOf(2).equals(failed.get(0).getCurrentVersion()),
        "412 names the current version",
        stale.getResponseBody());
    got = keys.getKeyWithHttpInfo(topic, "user/1", 2L, ConsistencyLevel.STRONG, null, null, null);
    check(
        got.getStatusCode() == 200 && Arrays.equals(got.getData(), adaL),
        "get consistency=strong and min_offset: the conditional write",
        new String(got.getData(), StandardCharsets.UTF_8));
    String applied = header(got, "X-Kv-Applied-Offset");
    check(applied != null && Long.parseLong(applied) >= 3, "get: X-Kv-Applied-Offset", got.getHeaders());

    // delete, then the key is gone.
    WriteResponse deleted = keys.deleteKey(topic, "user/1", null, null);
    check(deleted.getOffset() == 6, "delete: offset 6", deleted);
    checkError(
        () -> keys.getKey(topic, "user/1", null, null, null, null, null),
        404,
        "key_not_found",
        "get after delete: 404 key_not_found");

    // batch: puts in every encoding, and a delete.
    List<BatchOperation> ops = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      ops.add(new BatchOperation(new BatchPut().op(BatchPut.OpEnum.PUT).key("page/" + i).value(Map.of("n", i))));
    }
    ops.add(new BatchOperation(new BatchPut().op(BatchPut.OpEnum.PUT).key("page/5").value("text")));
    ops.add(new BatchOperation(
        new BatchPut().op(BatchPut.OpEnum.PUT).key("page/6").value("AAH/").encoding(ValueEncoding.BASE64)));
    ops.add(new BatchOperation(new BatchDelete().op(BatchDelete.OpEnum.DELETE).key(oddKey)));
    BatchResponse batch = keys.writeBatch(topic, new BatchRequest().ops(ops));
    check(
        batch.getResults().size() == ops.size() && batch.getOffset() == 7 + ops.size() - 1,
        "batch: one result per operation, last offset",
        batch);

    // range with paging: pages of 2, followed by next_cursor, see every key once, in order.
    List<String> seen = new ArrayList<>();
    Map<String, List<Object>> values = new LinkedHashMap<>();
    int pages = 0;
    String cursor = null;
    do {
      RangeResponse page = keys.scanRange(topic, "page/", null, null, 2L, cursor, null, null, null, null);
      check(page.getItems().size() <= 2, "range: page " + (pages + 1) + " of at most 2", page);
      pages++;
      for (RangeItem item : page.getItems()) {
        seen.add(item.getKey());
        values.put(item.getKey(), List.of(item.getValue(), item.getEncoding()));
      }
      cursor = page.getNextCursor();
    } while (cursor != null);
    check(
        seen.equals(List.of("page/0", "page/1", "page/2", "page/3", "page/4", "page/5", "page/6")),
        "range: every key once, in order",
        seen);
    check(pages == 4, "range: 4 pages", pages);
    // Gson reads a JSON number into Object as a Double.
    check(
        values.get("page/3").equals(List.of(Map.of("n", 3.0), ValueEncoding.JSON)),
        "range: a JSON value",
        values.get("page/3"));
    check(values.get("page/5").equals(List.of("text", ValueEncoding.TEXT)), "range: a text value", values.get("page/5"));
    check(
        values.get("page/6").equals(List.of("AAH/", ValueEncoding.BASE64)),
        "range: a binary value",
        values.get("page/6"));

    // topics: this one, with its live keys.
    TopicsApi topics = new TopicsApi(client);
    List<TopicSummary> mine = topics.listTopics().getTopics().stream().filter(t -> topic.equals(t.getName())).toList();
    check(
        mine.size() == 1 && mine.get(0).getKeys() == 7 && "ready".equals(mine.get(0).getState()),
        "topics: 7 keys, ready",
        mine);

    // errors come back as ErrorResponse with the documented status and code.
    checkError(
        () -> keys.scanRange("no-such-topic", null, null, null, null, null, null, null, null, null),
        404,
        "topic_not_found",
        "error: range of a missing topic");
    BatchPut bad = new BatchPut().op(BatchPut.OpEnum.PUT).key("k").value(5).encoding(ValueEncoding.BASE64);
    checkError(
        () -> keys.writeBatch(topic, new BatchRequest().ops(List.of(new BatchOperation(bad)))),
        422,
        "invalid_request",
        "error: a base64 value that is not a string");
    checkError(
        () -> keys.putKey(topic, "k".repeat(1025), null, null, "v".getBytes(StandardCharsets.UTF_8)),
        413,
        "key_too_large",
        "error: a key over 1024 bytes");
    long after = topics.listTopics().getTopics().stream()
        .filter(t -> topic.equals(t.getName())).mapToLong(TopicSummary::getKeys).sum();
    check(after == 7, "errors wrote nothing", after);
  }
}

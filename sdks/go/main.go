// Command sdk-smoke tests the Go client that oapi-codegen generates from openapi/openapi.json
// (package kvstore, see openapi/oapi-codegen.yaml): every kind of call against a live kvstore,
// each answer checked.
//
//	go run . URL [TOPIC]
//
// Prints one line per check; exits 1 at the first that fails. Run by scripts/check-sdks.sh.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"kvstore.example/sdk-smoke/kvstore"
)

type checkFailed struct{ message string }

func check(condition bool, what string, got any) {
	if !condition {
		panic(checkFailed{fmt.Sprintf("%s: got %+v", what, got)})
	}
	fmt.Printf("ok    %s\n", what)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sdk-smoke URL [TOPIC]")
		os.Exit(2)
	}
	topic := "sdk-go"
	if len(os.Args) > 2 {
		topic = os.Args[2]
	}
	defer func() {
		if failure := recover(); failure != nil {
			if failed, ok := failure.(checkFailed); ok {
				fmt.Printf("FAIL  %s\n", failed.message)
				os.Exit(1)
			}
			panic(failure)
		}
	}()
	if err := run(os.Args[1], topic); err != nil {
		panic(checkFailed{err.Error()})
	}
}

func run(url, topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := kvstore.NewClientWithResponses(url)
	if err != nil {
		return err
	}

	ready, err := client.GetReadinessWithResponse(ctx)
	if err != nil {
		return err
	}
	check(ready.JSON200 != nil && ready.JSON200.Status == "ready", "readyz: ready", ready.Status())

	// put: the body is the value's bytes, its Content-Type stored with it.
	written, err := client.PutKeyWithBodyWithResponse(ctx, topic, "user/1", nil, "application/json",
		strings.NewReader(`{"name":"Ada"}`))
	if err != nil {
		return err
	}
	check(written.JSON200 != nil && *written.JSON200 == kvstore.WriteResponse{Topic: topic, Key: "user/1", Offset: 0},
		"put: topic, key, offset 0", written.JSON200)
	binary := []byte{0, 1, 0xff}
	oddKey := "a/b c?d#e%f"
	odd, err := client.PutKeyWithBodyWithResponse(ctx, topic, oddKey, nil, "application/octet-stream",
		bytes.NewReader(binary))
	if err != nil {
		return err
	}
	check(odd.JSON200 != nil && odd.JSON200.Key == oddKey, "put: a key with / ? # % and a space", string(odd.Body))

	// get: the raw value with its content type, its version in X-Kv-Offset.
	got, err := client.GetKeyWithResponse(ctx, topic, "user/1", nil)
	if err != nil {
		return err
	}
	check(got.StatusCode() == 200, "get: 200", got.StatusCode())
	check(string(got.Body) == `{"name":"Ada"}`, "get: the bytes written", string(got.Body))
	check(got.HTTPResponse.Header.Get("Content-Type") == "application/json", "get: the content type written",
		got.HTTPResponse.Header)
	check(got.HTTPResponse.Header.Get("X-Kv-Offset") == "0", "get: X-Kv-Offset", got.HTTPResponse.Header)
	gotOdd, err := client.GetKeyWithResponse(ctx, topic, oddKey, nil)
	if err != nil {
		return err
	}
	check(bytes.Equal(gotOdd.Body, binary), "get: binary bytes under the odd key", gotOdd.Body)

	// Conditional put: If-Match with the version read writes; the same version again is
	// refused with 412, naming the key's current version. A conditional write is a
	// transaction, whose commit marker takes an offset (3); the refused one leaves an aborted
	// record and its marker (4, 5).
	version := `"0"`
	cas, err := client.PutKeyWithBodyWithResponse(ctx, topic, "user/1", &kvstore.PutKeyParams{IfMatch: &version},
		"application/json", strings.NewReader(`{"name":"Ada L."}`))
	if err != nil {
		return err
	}
	check(cas.StatusCode() == 200 && cas.JSON200 != nil && cas.JSON200.Offset == 2,
		"put If-Match: written at offset 2", string(cas.Body))
	stale, err := client.PutKeyWithBodyWithResponse(ctx, topic, "user/1", &kvstore.PutKeyParams{IfMatch: &version},
		"application/octet-stream", strings.NewReader("stale"))
	if err != nil {
		return err
	}
	check(stale.StatusCode() == 412 && stale.JSON412 != nil && stale.JSON412.Error.Code == "precondition_failed",
		"put If-Match stale: 412", string(stale.Body))
	failed := stale.JSON412.Error.Failed
	check(failed != nil && len(*failed) > 0 && (*failed)[0].CurrentVersion != nil &&
		*(*failed)[0].CurrentVersion == 2, "412 names the current version", string(stale.Body))
	strong, minOffset := kvstore.Strong, int64(2)
	got, err = client.GetKeyWithResponse(ctx, topic, "user/1",
		&kvstore.GetKeyParams{Consistency: &strong, MinOffset: &minOffset})
	if err != nil {
		return err
	}
	check(got.StatusCode() == 200 && string(got.Body) == `{"name":"Ada L."}`,
		"get consistency=strong and min_offset: the conditional write", string(got.Body))
	check(got.Headers200 != nil && got.Headers200.XKvAppliedOffset != nil && *got.Headers200.XKvAppliedOffset >= 3,
		"get: X-Kv-Applied-Offset", got.HTTPResponse.Header)

	// delete, then the key is gone.
	deleted, err := client.DeleteKeyWithResponse(ctx, topic, "user/1", nil)
	if err != nil {
		return err
	}
	check(deleted.JSON200 != nil && deleted.JSON200.Offset == 6, "delete: offset 6", deleted.JSON200)
	gone, err := client.GetKeyWithResponse(ctx, topic, "user/1", nil)
	if err != nil {
		return err
	}
	check(gone.StatusCode() == 404, "get after delete: 404", gone.StatusCode())
	check(gone.JSON404 != nil && gone.JSON404.Error.Code == "key_not_found", "get after delete: key_not_found",
		string(gone.Body))

	// batch: puts in every encoding, and a delete.
	var ops []kvstore.BatchOperation
	put := func(put kvstore.BatchPut) {
		var op kvstore.BatchOperation
		if err := op.FromBatchPut(put); err != nil {
			panic(checkFailed{err.Error()})
		}
		ops = append(ops, op)
	}
	for i := range 5 {
		put(kvstore.BatchPut{Key: fmt.Sprintf("page/%d", i), Value: map[string]any{"n": i}})
	}
	put(kvstore.BatchPut{Key: "page/5", Value: "text"})
	base64 := kvstore.Base64
	put(kvstore.BatchPut{Key: "page/6", Value: "AAH/", Encoding: &base64})
	var del kvstore.BatchOperation
	if err := del.FromBatchDelete(kvstore.BatchDelete{Key: oddKey}); err != nil {
		return err
	}
	ops = append(ops, del)
	batch, err := client.WriteBatchWithResponse(ctx, topic, kvstore.BatchRequest{Ops: ops})
	if err != nil {
		return err
	}
	check(batch.JSON200 != nil && len(batch.JSON200.Results) == len(ops) &&
		batch.JSON200.Offset == int64(7+len(ops)-1), "batch: one result per operation, last offset",
		string(batch.Body))

	// range with paging: pages of 2, followed by next_cursor, see every key once, in order.
	var keys []string
	values := map[string][2]any{}
	pages := 0
	prefix, limit := "page/", int64(2)
	params := kvstore.ScanRangeParams{Prefix: &prefix, Limit: &limit}
	for {
		page, err := client.ScanRangeWithResponse(ctx, topic, &params)
		if err != nil {
			return err
		}
		check(page.JSON200 != nil && len(page.JSON200.Items) <= 2,
			fmt.Sprintf("range: page %d of at most 2", pages+1), string(page.Body))
		pages++
		for _, item := range page.JSON200.Items {
			keys = append(keys, item.Key)
			values[item.Key] = [2]any{item.Value, item.Encoding}
		}
		if page.JSON200.NextCursor == nil {
			break
		}
		params.Cursor = page.JSON200.NextCursor
	}
	check(reflect.DeepEqual(keys, []string{"page/0", "page/1", "page/2", "page/3", "page/4", "page/5", "page/6"}),
		"range: every key once, in order", keys)
	check(pages == 4, "range: 4 pages", pages)
	// A JSON number decodes as float64 into `any`.
	check(reflect.DeepEqual(values["page/3"], [2]any{map[string]any{"n": 3.0}, kvstore.Json}),
		"range: a JSON value", values["page/3"])
	check(values["page/5"] == [2]any{"text", kvstore.Text}, "range: a text value", values["page/5"])
	check(values["page/6"] == [2]any{"AAH/", kvstore.Base64}, "range: a binary value", values["page/6"])

	// topics: this one, with its live keys.
	topics, err := client.ListTopicsWithResponse(ctx)
	if err != nil {
		return err
	}
	var mine []kvstore.TopicSummary
	for _, t := range topics.JSON200.Topics {
		if t.Name == topic {
			mine = append(mine, t)
		}
	}
	check(len(mine) == 1 && mine[0].Keys == 7 && mine[0].State == "ready", "topics: 7 keys, ready", mine)

	// errors come back as ErrorResponse with the documented status and code.
	missing, err := client.ScanRangeWithResponse(ctx, "no-such-topic", nil)
	if err != nil {
		return err
	}
	check(missing.JSON404 != nil && missing.JSON404.Error.Code == "topic_not_found",
		"error: range of a missing topic", string(missing.Body))
	var bad kvstore.BatchOperation
	if err := bad.FromBatchPut(kvstore.BatchPut{Key: "k", Value: 5, Encoding: &base64}); err != nil {
		return err
	}
	invalid, err := client.WriteBatchWithResponse(ctx, topic, kvstore.BatchRequest{Ops: []kvstore.BatchOperation{bad}})
	if err != nil {
		return err
	}
	check(invalid.JSON422 != nil && invalid.JSON422.Error.Code == "invalid_request",
		"error: a base64 value that is not a string", string(invalid.Body))
	longKey, err := client.PutKeyWithBodyWithResponse(ctx, topic, strings.Repeat("k", 1025), nil,
		"application/octet-stream", strings.NewReader("v"))
	if err != nil {
		return err
	}
	check(longKey.JSON413 != nil && longKey.JSON413.Error.Code == "key_too_large", "error: a key over 1024 bytes",
		string(longKey.Body))
	after, err := client.ListTopicsWithResponse(ctx)
	if err != nil {
		return err
	}
	keysAfter := int64(-1)
	for _, t := range after.JSON200.Topics {
		if t.Name == topic {
			keysAfter = t.Keys
		}
	}
	check(keysAfter == 7, "errors wrote nothing", keysAfter)
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func testConfig(t *testing.T, urls []string) Config {
	return Config{
		URLs:         urls,
		Topic:        "lin-test",
		Keys:         4,
		Clients:      16,
		Duration:     time.Second,
		Seed:         42,
		Timeout:      2 * time.Second,
		CheckTimeout: 30 * time.Second,
		Spread:       true,
		HTML:         filepath.Join(t.TempDir(), "history.html"),
	}
}

func runFake(t *testing.T, opts fakeOptions, edit func(*Config)) (Summary, *fakeKV) {
	t.Helper()
	f, urls := startFake(t, opts)
	cfg := testConfig(t, urls)
	cfg.Token = opts.token
	if edit != nil {
		edit(&cfg)
	}
	var log bytes.Buffer
	sum, err := run(context.Background(), cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	line, _ := json.Marshal(sum)
	t.Logf("fake wrote %d versions; summary %s", f.writes, line)
	if testing.Verbose() {
		t.Logf("stderr:\n%s", log.String())
	}
	return sum, f
}

func TestCorrectFakeIsLinearizable(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{replicas: 2, latency: time.Millisecond, token: "secret"}, nil)
	if sum.Result != "ok" || sum.ExitCode() != exitOK {
		t.Fatalf("result %s exit %d, want ok 0", sum.Result, sum.ExitCode())
	}
	if sum.Definite < minDefinite || sum.CASOK == 0 || sum.CASFailed == 0 || sum.Deletes == 0 {
		t.Fatalf("the workload did too little: %+v", sum)
	}
}

func TestCorrectFakeStickyClients(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{replicas: 3, latency: time.Millisecond},
		func(c *Config) { c.Spread = false })
	if sum.Result != "ok" {
		t.Fatalf("result %s, want ok", sum.Result)
	}
}

// Unknown outcomes, applied or not, now or later, must not be called violations.
func TestFlakyCorrectFakeIsLinearizable(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{replicas: 2, latency: time.Millisecond, flaky: true}, nil)
	if sum.Result != "ok" || sum.ExitCode() != exitOK {
		t.Fatalf("result %s exit %d, want ok 0", sum.Result, sum.ExitCode())
	}
	if sum.Unknown == 0 || sum.ErrorsByStatus["503"] == 0 || sum.ErrorsByStatus["429"] == 0 || sum.ErrorsByStatus["504"] == 0 {
		t.Fatalf("the fake's failures did not show: %+v", sum)
	}
}

func wantIllegal(t *testing.T, sum Summary) {
	t.Helper()
	if sum.Result != "illegal" || sum.ExitCode() != exitIllegal {
		t.Fatalf("result %s exit %d, want illegal 1", sum.Result, sum.ExitCode())
	}
	if len(sum.IllegalKeys) == 0 {
		t.Fatalf("no illegal key named")
	}
	if st, err := os.Stat(sum.HTML); err != nil || st.Size() == 0 {
		t.Fatalf("visualization %q not written: %v", sum.HTML, err)
	}
}

// Only lin-2 is broken, so only lin-2 may be named.
func TestCASIgnoringIfMatchIsCaught(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{latency: time.Millisecond, brokenCAS: "lin-2"}, nil)
	wantIllegal(t, sum)
	if len(sum.IllegalKeys) != 1 || sum.IllegalKeys[0] != "lin-2" {
		t.Fatalf("illegal keys %v, want [lin-2]", sum.IllegalKeys)
	}
}

// Check-then-act without holding the lock: each request looks right, the race does not.
func TestNonAtomicCASIsCaught(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{latency: time.Millisecond, racyCAS: true}, nil)
	wantIllegal(t, sum)
}

func TestStaleReplicaIsCaught(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{replicas: 2, latency: time.Millisecond, stale: 30 * time.Millisecond}, nil)
	wantIllegal(t, sum)
}

// A "nothing was written" code that lies must show: the tool trusts those codes.
func TestAppliedDespiteUnavailableIsCaught(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{latency: time.Millisecond, lieUnavailable: true}, nil)
	wantIllegal(t, sum)
}

func TestTooFewOperationsFail(t *testing.T) {
	sum, _ := runFake(t, fakeOptions{}, func(c *Config) { c.Duration = time.Microsecond; c.Clients = 1 })
	if sum.Result != "ok" || sum.ExitCode() != exitTooFew {
		t.Fatalf("result %s exit %d, want ok 3", sum.Result, sum.ExitCode())
	}
}

func TestMainArgs(t *testing.T) {
	_, urls := startFake(t, fakeOptions{token: "secret"})
	var stdout, stderr bytes.Buffer
	args := []string{"--urls", strings.Join(urls, ","), "--topic", "t", "--duration", "300ms",
		"--seed", "7", "--clients", "4", "--token", "secret"}
	if code := mainArgs(args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var sum map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", stdout.String())
	}
	for _, field := range []string{"seed", "ops", "reads", "writes", "cas", "cas_ok", "cas_failed",
		"deletes", "unknown", "errors_by_status", "result", "check_seconds"} {
		if _, ok := sum[field]; !ok {
			t.Errorf("summary lacks %q: %s", field, stdout.String())
		}
	}
	if sum["seed"] != 7.0 || !strings.Contains(stderr.String(), "seed=7") {
		t.Errorf("seed not reported: %s / %s", stdout.String(), stderr.String())
	}

	// Without the token every write is a 401: a contract error, exit 2, not a pass.
	stdout.Reset()
	stderr.Reset()
	if code := mainArgs(args[:len(args)-2], &stdout, &stderr); code != exitSetup {
		t.Fatalf("exit %d without the token, want 2\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "401") {
		t.Errorf("the refused body is not shown: %s", stderr.String())
	}

	// A violation: exit 1, and stderr names the seed, the key and the visualization.
	_, broken := startFake(t, fakeOptions{latency: time.Millisecond, brokenCAS: "lin-1"})
	html := filepath.Join(t.TempDir(), "v.html")
	stdout.Reset()
	stderr.Reset()
	code := mainArgs([]string{"--urls", broken[0], "--topic", "t", "--duration", "500ms", "--seed", "7",
		"--html", html}, &stdout, &stderr)
	if code != exitIllegal {
		t.Fatalf("exit %d against a broken CAS, want 1\n%s", code, stderr.String())
	}
	if want := "NOT LINEARIZABLE: seed=7 keys=lin-1 visualization=" + html; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}

	for _, bad := range [][]string{{"--topic", "t"}, {"--urls", urls[0]}, {"--urls", "ftp://x", "--topic", "t"}} {
		if code := mainArgs(bad, &stdout, &stderr); code != exitSetup {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// Hand-made histories pin the model down, apart from any HTTP.
func TestModel(t *testing.T) {
	v := func(s string) kvState { return kvState{Present: true, Value: s} }
	w := func(c int, val string, call, ret int64, unknown ...outcome) porcupine.Operation {
		out := kvOutput{Outcome: outOK}
		if len(unknown) > 0 {
			out.Outcome = unknown[0]
		}
		return porcupine.Operation{ClientId: c, Input: kvInput{Kind: opWrite, Key: "k", Value: val},
			Call: call, Output: out, Return: ret}
	}
	r := func(c int, s kvState, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{Kind: opRead, Key: "k"},
			Call: call, Output: kvOutput{Read: s}, Return: ret}
	}
	cas := func(c int, expect kvState, val string, call, ret int64, o outcome) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{Kind: opCAS, Key: "k", Value: val, Expect: expect},
			Call: call, Output: kvOutput{Outcome: o}, Return: ret}
	}
	del := func(c int, call, ret int64, o outcome) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: kvInput{Kind: opDelete, Key: "k"},
			Call: call, Output: kvOutput{Outcome: o}, Return: ret}
	}
	const end = 1000
	cases := []struct {
		name    string
		history []porcupine.Operation
		ok      bool
	}{
		{"read absent at start", []porcupine.Operation{r(0, absent, 0, 1)}, true},
		{"read after write", []porcupine.Operation{w(0, "a", 0, 1), r(1, v("a"), 2, 3)}, true},
		{"stale read", []porcupine.Operation{w(0, "a", 0, 1), w(0, "b", 2, 3), r(1, v("a"), 4, 5)}, false},
		{"unknown write seen", []porcupine.Operation{w(0, "a", 0, end, outUnknown), r(1, v("a"), 4, 5)}, true},
		{"unknown write unseen", []porcupine.Operation{w(0, "a", 0, end, outUnknown), r(1, absent, 4, 5)}, true},
		{"unknown write seen then gone", []porcupine.Operation{
			w(0, "a", 0, end, outUnknown), r(1, v("a"), 4, 5), r(1, absent, 6, 7)}, false},
		{"cas ok", []porcupine.Operation{w(0, "a", 0, 1), cas(1, v("a"), "b", 2, 3, outOK), r(0, v("b"), 4, 5)}, true},
		{"two cas from one value", []porcupine.Operation{
			w(0, "a", 0, 1), cas(1, v("a"), "b", 2, 5, outOK), cas(2, v("a"), "c", 2, 5, outOK)}, false},
		{"cas failed though it held", []porcupine.Operation{w(0, "a", 0, 1), cas(1, v("a"), "b", 2, 3, outFailed)}, false},
		{"cas failed, concurrent write", []porcupine.Operation{
			w(0, "a", 0, 1), w(2, "z", 2, 3), cas(1, v("a"), "b", 2, 3, outFailed)}, true},
		{"create when absent", []porcupine.Operation{del(0, 0, 1, outOK), cas(1, absent, "b", 2, 3, outOK)}, true},
		{"create when present", []porcupine.Operation{w(0, "a", 0, 1), cas(1, absent, "b", 2, 3, outOK)}, false},
		{"unknown cas that could not apply", []porcupine.Operation{
			w(0, "a", 0, 1), cas(1, v("x"), "b", 2, end, outUnknown), r(0, v("b"), 4, 5)}, false},
		{"unknown cas applied", []porcupine.Operation{
			w(0, "a", 0, 1), cas(1, v("a"), "b", 2, end, outUnknown), r(0, v("b"), 4, 5)}, true},
		{"unknown delete", []porcupine.Operation{
			w(0, "a", 0, 1), del(1, 2, end, outUnknown), r(0, v("a"), 4, 5), r(0, absent, 6, 7)}, true},
	}
	for _, c := range cases {
		v := check(c.history, time.Second, false)
		if (v.result == porcupine.Ok) != c.ok {
			t.Errorf("%s: %s, want ok=%v", c.name, v.result, c.ok)
		}
		if v.result == porcupine.Illegal && (len(v.illegalKeys) != 1 || v.illegalKeys[0] != "k" || !v.hasInfo) {
			t.Errorf("%s: illegal keys %v", c.name, v.illegalKeys)
		}
	}
}

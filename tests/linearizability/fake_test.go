package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeOptions pick which kvstore the fake pretends to be; the zero value is a correct one.
type fakeOptions struct {
	replicas int
	latency  time.Duration // each request sleeps up to this, before and after its effect
	token    string        // required bearer token, if set

	flaky          bool          // some writes fail with 503/504, applied or not, as allowed
	brokenCAS      string        // on this key, If-Match and If-None-Match are ignored
	racyCAS        bool          // a CAS checks its condition, lets go of the lock, then writes
	stale          time.Duration // replica 1 answers reads as of this long ago
	lieUnavailable bool          // some writes answer 503 broker_unavailable after applying
}

type fakeVersion struct {
	at      time.Time
	present bool
	value   string
	version int64
}

// fakeKV is an in-memory kvstore: one mutex, versions from a counter, and every key's
// past kept so that a stale replica can serve it.
type fakeKV struct {
	opts fakeOptions

	mu      sync.Mutex
	rng     *rand.Rand
	version int64
	keys    map[string][]fakeVersion
	writes  int
}

func startFake(t *testing.T, opts fakeOptions) (*fakeKV, []string) {
	t.Helper()
	if opts.replicas == 0 {
		opts.replicas = 1
	}
	f := &fakeKV{opts: opts, rng: rand.New(rand.NewPCG(1, 2)), keys: map[string][]fakeVersion{}}
	var urls []string
	for i := 0; i < opts.replicas; i++ {
		srv := httptest.NewServer(f.handler(i))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return f, urls
}

func writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": code}})
}

func (f *fakeKV) pause() {
	if f.opts.latency > 0 {
		f.mu.Lock()
		d := time.Duration(f.rng.Int64N(int64(f.opts.latency)))
		f.mu.Unlock()
		time.Sleep(d)
	}
}

// current is the key's latest version, or the one current `ago` earlier. Holds f.mu.
func (f *fakeKV) current(key string, ago time.Duration) fakeVersion {
	versions := f.keys[key]
	cutoff := time.Now().Add(-ago)
	for i := len(versions) - 1; i >= 0; i-- {
		if ago == 0 || !versions[i].at.After(cutoff) {
			return versions[i]
		}
	}
	return fakeVersion{}
}

// apply makes a new version. Holds f.mu.
func (f *fakeKV) apply(key string, present bool, value string) int64 {
	f.version++
	f.writes++
	f.keys[key] = append(f.keys[key], fakeVersion{at: time.Now(), present: present, value: value, version: f.version})
	return f.version
}

func etagOf(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

func (f *fakeKV) handler(replica int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/{topic}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("consistency") != "strong" {
			writeError(w, http.StatusBadRequest, "weak_read_in_test")
			return
		}
		f.pause()
		ago := time.Duration(0)
		if replica == 1 {
			ago = f.opts.stale
		}
		f.mu.Lock()
		cur := f.current(r.PathValue("key"), ago)
		f.mu.Unlock()
		f.pause()
		if !cur.present {
			writeError(w, http.StatusNotFound, "key_not_found")
			return
		}
		w.Header().Set("ETag", etagOf(cur.version))
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, cur.value)
	})
	mutate := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_body")
			return
		}
		if r.Method == http.MethodPut && r.Header.Get("Content-Type") != "text/plain" {
			writeError(w, http.StatusBadRequest, "wrong_content_type_in_test")
			return
		}
		f.pause()
		key := r.PathValue("key")
		f.mu.Lock()
		roll := f.rng.IntN(100)
		cur := f.current(key, 0)
		status, code := http.StatusOK, ""
		switch {
		case f.opts.flaky && roll < 3:
			status, code = http.StatusServiceUnavailable, "broker_unavailable"
		case f.opts.flaky && roll < 6:
			status, code = http.StatusTooManyRequests, "overloaded"
		case f.opts.flaky && roll < 9:
			status, code = http.StatusGatewayTimeout, "write_timeout" // not applied
		}
		conditional := r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != ""
		if status == http.StatusOK && f.opts.brokenCAS != key {
			if m := r.Header.Get("If-Match"); m != "" && (!cur.present || m != etagOf(cur.version)) {
				status, code = http.StatusPreconditionFailed, "precondition_failed"
			}
			if r.Header.Get("If-None-Match") == "*" && cur.present {
				status, code = http.StatusPreconditionFailed, "precondition_failed"
			}
		}
		if status == http.StatusOK && conditional && f.opts.racyCAS {
			f.mu.Unlock()
			f.pause()
			f.mu.Lock()
		}
		var version int64
		if status == http.StatusOK {
			switch {
			case f.opts.flaky && roll < 12 && r.Method == http.MethodPut && !conditional:
				// Applied after the answer, as a write that timed out in kvstore may be.
				// Only plain writes: a CAS whose condition was checked now but applied
				// later is not atomic, and the checker rightly rejects it.
				status, code = http.StatusGatewayTimeout, "write_timeout"
				value := string(body)
				time.AfterFunc(time.Duration(f.rng.IntN(20))*time.Millisecond, func() {
					f.mu.Lock()
					f.apply(key, true, value)
					f.mu.Unlock()
				})
			default:
				version = f.apply(key, r.Method == http.MethodPut, string(body))
				switch {
				case f.opts.flaky && roll < 15:
					status, code = http.StatusGatewayTimeout, "write_timeout" // applied
				case f.opts.flaky && roll < 18:
					status, code = http.StatusServiceUnavailable, "batch_incomplete" // applied
				case f.opts.lieUnavailable && roll < 5:
					status, code = http.StatusServiceUnavailable, "broker_unavailable" // a lie
				}
			}
		}
		f.mu.Unlock()
		f.pause()
		if status != http.StatusOK {
			writeError(w, status, code)
			return
		}
		w.Header().Set("ETag", etagOf(version))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"topic":%q,"key":%q,"offset":%d}`, r.PathValue("topic"), key, version)
	}
	mux.HandleFunc("PUT /v1/{topic}/keys/{key}", mutate)
	mux.HandleFunc("DELETE /v1/{topic}/keys/{key}", mutate)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.opts.token != "" && r.Header.Get("Authorization") != "Bearer "+f.opts.token {
			writeError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

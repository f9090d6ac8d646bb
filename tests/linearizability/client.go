package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// notAppliedCodes are the error codes that kvstore answers (with 503 or 429) only when it
// wrote nothing: the request was refused before anything was produced to Kafka. Every
// other failed write may still take effect, so it is recorded with an unknown outcome.
var notAppliedCodes = [...]string{
	"broker_unavailable",
	"not_enough_replicas",
	"overloaded",
	"server_busy",
	"topic_replaying",
	"topic_unavailable",
	// Conditional writes only: the transaction was aborted before it could commit.
	"replica_behind",
	"batch_interleaved",
}

// maxBody bounds what is read of any answer; values here are a few bytes.
const maxBody = 1 << 20

// reply is what one HTTP request came back with.
type reply struct {
	status int
	body   []byte
	etag   string
	code   string // the JSON error code, if the body had one
	err    error  // transport error or timeout; status is 0 then
}

// errorKey names the reply in errors_by_status: the status, or for no answer "dial"
// (not sent), "timeout" or "transport".
func (r reply) errorKey() string {
	switch {
	case r.err == nil:
		return strconv.Itoa(r.status)
	case isDialError(r.err):
		return "dial"
	case isTimeout(r.err):
		return "timeout"
	default:
		return "transport"
	}
}

func (r reply) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	if r.code != "" {
		return fmt.Sprintf("%d %s", r.status, r.code)
	}
	return strconv.Itoa(r.status)
}

// notApplied tells whether the reply proves that a write changed nothing.
func (r reply) notApplied() bool {
	if r.err != nil {
		// A failed dial sent no byte; anything later may have reached the server.
		return isDialError(r.err)
	}
	switch r.status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return slices.Contains(notAppliedCodes[:], r.code)
	case http.StatusNotFound:
		// The topic is missing (auto-creation off): nothing to write into.
		return true
	}
	return false
}

// isContractError flags a 4xx that the workload should never provoke: the tool or the
// service's contract is wrong, and a history built on it proves nothing. 429 is load
// shedding, handled like a 503.
func (r reply) isContractError() bool {
	switch r.status {
	case http.StatusNotFound, http.StatusPreconditionFailed, http.StatusTooManyRequests:
		return false
	}
	return r.err == nil && r.status >= 400 && r.status < 500
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// kvClient speaks kvstore's key API to one cluster.
type kvClient struct {
	http  *http.Client
	topic string
	token string
}

func newKVClient(timeout time.Duration, conns int, topic, token string) *kvClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = conns * 4
	transport.MaxIdleConnsPerHost = conns * 2
	return &kvClient{
		http:  &http.Client{Timeout: timeout, Transport: transport},
		topic: topic,
		token: token,
	}
}

func (c *kvClient) close() { c.http.CloseIdleConnections() }

func (c *kvClient) keyURL(base, key string) string {
	return fmt.Sprintf("%s/v1/%s/keys/%s", strings.TrimRight(base, "/"),
		url.PathEscape(c.topic), url.PathEscape(key))
}

func (c *kvClient) do(method, target string, body string, header map[string]string) reply {
	var reader io.Reader
	if method == http.MethodPut {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		return reply{err: err}
	}
	if method == http.MethodPut {
		req.Header.Set("Content-Type", "text/plain")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The status came but the body did not: for a read the value is unknown, and
		// for a write the status alone is not trusted either.
		return reply{err: err}
	}
	r := reply{status: resp.StatusCode, body: data, etag: resp.Header.Get("ETag")}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil {
			r.code = e.Error.Code
		}
	}
	return r
}

// get is a strong read.
func (c *kvClient) get(base, key string) reply {
	return c.do(http.MethodGet, c.keyURL(base, key)+"?consistency=strong", "", nil)
}

// put writes value; header carries the precondition of a CAS, nil for a plain write.
func (c *kvClient) put(base, key, value string, header map[string]string) reply {
	return c.do(http.MethodPut, c.keyURL(base, key), value, header)
}

func (c *kvClient) del(base, key string) reply {
	return c.do(http.MethodDelete, c.keyURL(base, key), "", nil)
}

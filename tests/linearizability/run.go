package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// Config is one run; main fills it from flags, tests directly.
type Config struct {
	URLs         []string
	Topic        string
	Keys         int
	Clients      int
	Duration     time.Duration
	Seed         int64
	Timeout      time.Duration // per request
	CheckTimeout time.Duration
	Spread       bool // a random replica per request, else one per client
	HTML         string
	HTMLAlways   bool
	Token        string
}

// Summary is the final JSON line.
type Summary struct {
	Seed           int64          `json:"seed"`
	Ops            int            `json:"ops"`
	Reads          int            `json:"reads"`
	Writes         int            `json:"writes"`
	CAS            int            `json:"cas"`
	CASOK          int            `json:"cas_ok"`
	CASFailed      int            `json:"cas_failed"`
	Deletes        int            `json:"deletes"`
	Unknown        int            `json:"unknown"`
	ErrorsByStatus map[string]int `json:"errors_by_status"`
	Result         string         `json:"result"`
	CheckSeconds   float64        `json:"check_seconds"`
	// Beyond the required fields: what made the result what it is.
	Definite       int      `json:"definite"`
	ContractErrors int      `json:"contract_errors,omitempty"`
	IllegalKeys    []string `json:"illegal_keys,omitempty"`
	HTML           string   `json:"html,omitempty"`
	Error          string   `json:"error,omitempty"`
}

// minDefinite is the fewest decided operations for a pass: a run that checked nothing
// (every request failing) must not look like a linearizable one.
const minDefinite = 100

// Exit codes.
const (
	exitOK       = 0
	exitIllegal  = 1
	exitSetup    = 2
	exitTooFew   = 3
	maxBadBodies = 5  // contract-error bodies printed
	maxContract  = 20 // contract errors before the run is cut short
)

// ExitCode maps a summary to the process's exit status.
func (s Summary) ExitCode() int {
	switch {
	case s.Result == "illegal":
		return exitIllegal
	case s.Error != "" || s.ContractErrors > 0:
		return exitSetup
	case s.Definite < minDefinite:
		return exitTooFew
	case s.Result != "ok":
		return exitSetup
	}
	return exitOK
}

// recorder is a run's shared state; each client appends to its own history slice.
type recorder struct {
	cfg    Config
	kv     *kvClient
	start  time.Time
	log    io.Writer
	cancel context.CancelFunc

	done atomic.Int64 // operations recorded, for progress

	mu        sync.Mutex
	contract  int
	badBodies []string
}

// worker is one client: its RNG, its history and its counters.
type worker struct {
	r       *recorder
	id      int
	rng     *rand.Rand
	n       int // values written so far, for unique values
	history []porcupine.Operation
	errors  map[string]int
	codes   map[string]int
	omitted map[string]string // value of a write left out as not applied -> its reply
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// unknownReturn marks an undecided operation; it is moved to the end of the history once
// the run is over, since the write may take effect at any time after its call.
const unknownReturn = -1

func (w *worker) replica() (int, string) {
	urls := w.r.cfg.URLs
	i := w.id % len(urls)
	if w.r.cfg.Spread {
		i = w.rng.IntN(len(urls))
	}
	return i, urls[i]
}

// opMeta is shown in the visualization and used by warnOddReads; the checker ignores it.
type opMeta struct {
	Replica int
	Reply   string
	ETag    string // of a read
}

func (m opMeta) String() string {
	if m.ETag != "" {
		return fmt.Sprintf("replica %d: %s, etag %s", m.Replica, m.Reply, m.ETag)
	}
	return fmt.Sprintf("replica %d: %s", m.Replica, m.Reply)
}

func (w *worker) record(in kvInput, call int64, out kvOutput, ret int64, meta opMeta) {
	w.history = append(w.history, porcupine.Operation{
		ClientId: w.id, Input: in, Call: call, Output: out, Return: ret, Metadata: meta,
	})
	w.r.done.Add(1)
}

// failed counts a reply that is not a plain success and notes contract errors.
func (w *worker) failed(rep reply, what string) {
	w.errors[rep.errorKey()]++
	if rep.code != "" {
		w.codes[rep.errorKey()+" "+rep.code]++
	}
	if rep.isContractError() {
		w.r.contractError(fmt.Sprintf("%s: %d %s", what, rep.status, strings.TrimSpace(string(rep.body))))
	}
}

// contractError notes an answer the contract rules out; enough of them end the run early.
func (r *recorder) contractError(detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.contract++
	if len(r.badBodies) < maxBadBodies {
		r.badBodies = append(r.badBodies, detail)
	}
	if r.contract >= maxContract {
		r.cancel()
	}
}

func (r *recorder) contractErrors() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.contract, slices.Clone(r.badBodies)
}

// read does a strong read and records it if it has an answer; ok is false otherwise.
func (w *worker) read(key string) (state kvState, etag string, ok bool) {
	idx, base := w.replica()
	call := w.r.now()
	rep := w.r.kv.get(base, key)
	ret := w.r.now()
	switch {
	case rep.err == nil && rep.status == 200:
		state = kvState{Present: true, Value: string(rep.body)}
		etag = rep.etag
	case rep.err == nil && rep.status == 404 && rep.code == "key_not_found":
		state = absent
	default:
		// Reads change nothing, so one without an answer is simply left out.
		w.failed(rep, "GET "+key)
		return absent, "", false
	}
	w.record(kvInput{Kind: opRead, Key: key}, call, kvOutput{Read: state}, ret,
		opMeta{Replica: idx, Reply: rep.String(), ETag: etag})
	return state, etag, true
}

// mutate sends a write, delete or CAS and records it according to what the reply proves.
func (w *worker) mutate(in kvInput, header map[string]string) {
	idx, base := w.replica()
	call := w.r.now()
	var rep reply
	if in.Kind == opDelete {
		rep = w.r.kv.del(base, in.Key)
	} else {
		rep = w.r.kv.put(base, in.Key, in.Value, header)
	}
	ret := w.r.now()
	meta := opMeta{Replica: idx, Reply: rep.String()}
	out := kvOutput{Outcome: outOK}
	switch {
	case rep.err == nil && rep.status == 200:
	case in.Kind == opCAS && rep.err == nil && rep.status == 412 && rep.code == "precondition_failed":
		// Must be recorded: it claims the condition was false within its interval.
		out.Outcome = outFailed
	case rep.notApplied() || rep.isContractError():
		// Changed nothing and claims nothing about the state: leave it out.
		w.failed(rep, fmt.Sprintf("%s %s", kindName(in.Kind), in.Key))
		if in.Kind != opDelete {
			w.omitted[in.Value] = rep.String()
		}
		return
	default:
		w.failed(rep, fmt.Sprintf("%s %s", kindName(in.Kind), in.Key))
		out.Outcome = outUnknown
		ret = unknownReturn
	}
	w.record(in, call, out, ret, meta)
}

func kindName(k opKind) string {
	return [...]string{"read", "write", "delete", "cas"}[k]
}

func (w *worker) nextValue() string {
	w.n++
	return fmt.Sprintf("c%d-%d", w.id, w.n)
}

// one runs one randomly chosen operation.
func (w *worker) one() {
	key := "lin-" + strconv.Itoa(w.rng.IntN(w.r.cfg.Keys))
	switch p := w.rng.IntN(100); {
	case p < 40:
		w.read(key)
	case p < 55:
		w.mutate(kvInput{Kind: opWrite, Key: key, Value: w.nextValue()}, nil)
	case p < 60:
		w.mutate(kvInput{Kind: opDelete, Key: key}, nil)
	default:
		state, etag, ok := w.read(key)
		if !ok {
			return
		}
		header := map[string]string{"If-None-Match": "*"}
		if state.Present {
			if etag == "" {
				w.r.contractError("GET " + key + ": 200 without an ETag")
				return
			}
			header = map[string]string{"If-Match": etag}
		}
		w.mutate(kvInput{Kind: opCAS, Key: key, Value: w.nextValue(), Expect: state}, header)
	}
}

// setup writes every key once, so that leftovers from earlier runs on the topic are
// overwritten by a recorded write before any read.
func (r *recorder) setup(w *worker) error {
	deadline := time.Now().Add(setupTimeout)
	for i := 0; i < r.cfg.Keys; i++ {
		key := "lin-" + strconv.Itoa(i)
		for attempt := 0; ; attempt++ {
			before := len(w.history)
			w.mutate(kvInput{Kind: opWrite, Key: key, Value: fmt.Sprintf("setup-%d-%d", i, attempt)}, nil)
			if len(w.history) > before && w.history[before].Output.(kvOutput).Outcome == outOK {
				break
			}
			if n, bodies := r.contractErrors(); n > 0 {
				return fmt.Errorf("setup: writing %s was refused: %s", key, strings.Join(bodies, "; "))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("setup: could not write %s within %s (errors %v)", key, setupTimeout, w.errors)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

const setupTimeout = 15 * time.Second

func (r *recorder) newWorker(id int) *worker {
	return &worker{
		r: r, id: id,
		rng:     rand.New(rand.NewPCG(uint64(r.cfg.Seed), uint64(id))),
		errors:  map[string]int{},
		codes:   map[string]int{},
		omitted: map[string]string{},
	}
}

// run drives the cluster, records the history and checks it. An error means the run
// could not be set up; the summary says everything else.
func run(ctx context.Context, cfg Config, log io.Writer) (Summary, error) {
	sum := Summary{Seed: cfg.Seed, Result: "unknown", ErrorsByStatus: map[string]int{}}
	if len(cfg.URLs) == 0 || cfg.Topic == "" || cfg.Keys < 1 || cfg.Clients < 1 || cfg.Duration <= 0 {
		return sum, fmt.Errorf("need urls, a topic, keys >= 1, clients >= 1 and a duration")
	}
	fmt.Fprintf(log, "kvlin: seed=%d topic=%s replicas=%d clients=%d keys=%d duration=%s spread=%v\n",
		cfg.Seed, cfg.Topic, len(cfg.URLs), cfg.Clients, cfg.Keys, cfg.Duration, cfg.Spread)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &recorder{cfg: cfg, start: time.Now(), log: log, cancel: cancel,
		kv: newKVClient(cfg.Timeout, cfg.Clients, cfg.Topic, cfg.Token)}
	defer r.kv.close()

	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		workers[i] = r.newWorker(i)
	}
	if err := r.setup(workers[0]); err != nil {
		maps.Copy(sum.ErrorsByStatus, workers[0].errors)
		return sum, err
	}

	deadline := time.Now().Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				w.one()
			}
		}()
	}
	stopProgress := r.progress(deadline)
	wg.Wait()
	stopProgress()
	end := r.now() + 1

	var history []porcupine.Operation
	codes := map[string]int{}
	omitted := map[string]string{}
	for _, w := range workers {
		maps.Copy(omitted, w.omitted)
		for _, op := range w.history {
			if op.Return == unknownReturn {
				op.Return = end
			}
			history = append(history, op)
		}
		for k, n := range w.errors {
			sum.ErrorsByStatus[k] += n
		}
		for k, n := range w.codes {
			codes[k] += n
		}
	}
	sum.count(history)
	contract, bodies := r.contractErrors()
	sum.ContractErrors = contract
	fmt.Fprintf(log, "kvlin: %d ops recorded (%d reads, %d writes, %d cas: %d ok %d failed, %d deletes), %d unknown; errors %v\n",
		sum.Ops, sum.Reads, sum.Writes, sum.CAS, sum.CASOK, sum.CASFailed, sum.Deletes, sum.Unknown, sum.ErrorsByStatus)
	if len(codes) > 0 {
		fmt.Fprintf(log, "kvlin: error codes %v\n", codes)
	}
	for _, b := range bodies {
		fmt.Fprintf(log, "kvlin: unexpected answer: %s\n", b)
	}
	warnOddReads(history, omitted, log)

	fmt.Fprintf(log, "kvlin: checking %d ops with porcupine (timeout %s)\n", len(history), cfg.CheckTimeout)
	checkStart := time.Now()
	v := check(history, cfg.CheckTimeout, cfg.HTMLAlways)
	sum.CheckSeconds = time.Since(checkStart).Seconds()
	switch v.result {
	case porcupine.Ok:
		sum.Result = "ok"
	case porcupine.Illegal:
		sum.Result = "illegal"
		sum.IllegalKeys = v.illegalKeys
	default:
		sum.Result = "unknown"
	}

	if v.hasInfo {
		path := cfg.HTML
		if path == "" {
			path = filepath.Join(os.TempDir(), fmt.Sprintf("kvlin-%d.html", cfg.Seed))
		}
		if err := porcupine.VisualizePath(kvModel, v.info, path); err != nil {
			fmt.Fprintf(log, "kvlin: writing %s: %v\n", path, err)
		} else {
			sum.HTML = path
		}
	}

	switch sum.Result {
	case "ok":
		fmt.Fprintf(log, "kvlin: linearizable (checked in %.1fs)\n", sum.CheckSeconds)
	case "illegal":
		fmt.Fprintf(log, "kvlin: NOT LINEARIZABLE: seed=%d keys=%s visualization=%s\n",
			cfg.Seed, strings.Join(sum.IllegalKeys, ","), sum.HTML)
	default:
		fmt.Fprintf(log, "kvlin: check timed out after %s: seed=%d\n", cfg.CheckTimeout, cfg.Seed)
	}
	if sum.ContractErrors > 0 {
		fmt.Fprintf(log, "kvlin: %d answers broke the contract (4xx): the tool or the service is wrong\n", sum.ContractErrors)
	}
	if sum.Definite < minDefinite {
		fmt.Fprintf(log, "kvlin: only %d operations had a definite outcome (need %d): seed=%d\n",
			sum.Definite, minDefinite, cfg.Seed)
	}
	return sum, nil
}

func (s *Summary) count(history []porcupine.Operation) {
	for _, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		s.Ops++
		if out.Outcome == outUnknown {
			s.Unknown++
		}
		switch in.Kind {
		case opRead:
			s.Reads++
		case opWrite:
			s.Writes++
		case opDelete:
			s.Deletes++
		case opCAS:
			s.CAS++
			switch out.Outcome {
			case outOK:
				s.CASOK++
			case outFailed:
				s.CASFailed++
			}
		}
	}
	s.Definite = s.Ops - s.Unknown
}

// warnOddReads names reads that the model rejects for a plain reason the visualization
// hides: the value of a write answered as "nothing was written", a value this run never
// wrote (a leftover of an earlier run on the topic), or one value under two versions
// (then If-Match does not test the value, and CAS verdicts mislead).
func warnOddReads(history []porcupine.Operation, omitted map[string]string, log io.Writer) {
	written := map[string]bool{}
	for _, op := range history {
		if in := op.Input.(kvInput); in.Kind == opWrite || in.Kind == opCAS {
			written[in.Value] = true
		}
	}
	var refused, foreign, twoVersions []string
	versions := map[string]string{}
	for _, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if in.Kind != opRead || !out.Read.Present {
			continue
		}
		v := out.Read.Value
		if answer, ok := omitted[v]; ok {
			refused = append(refused, fmt.Sprintf("%s=%q (answered %s)", in.Key, v, answer))
		} else if !written[v] {
			foreign = append(foreign, fmt.Sprintf("%s=%q", in.Key, v))
		}
		etag := op.Metadata.(opMeta).ETag
		if seen, ok := versions[v]; ok && seen != etag {
			twoVersions = append(twoVersions, fmt.Sprintf("%q as %s and %s", v, seen, etag))
		}
		versions[v] = etag
	}
	for _, odd := range []struct {
		list []string
		what string
	}{
		{refused, "the value of a write answered as not applied"},
		{foreign, "a value this run never wrote (use a fresh topic?)"},
		{twoVersions, "a value under another version than before (duplicated record?)"},
	} {
		if len(odd.list) > 0 {
			sort.Strings(odd.list)
			fmt.Fprintf(log, "kvlin: %d reads saw %s, e.g. %s\n", len(odd.list), odd.what, odd.list[0])
		}
	}
}

// progress prints a line every few seconds until the returned function is called.
func (r *recorder) progress(deadline time.Time) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				left := time.Until(deadline).Round(time.Second)
				fmt.Fprintf(r.log, "kvlin: %d ops so far, %s left\n", r.done.Load(), max(left, 0))
			}
		}
	}()
	return func() { close(stop); <-done }
}

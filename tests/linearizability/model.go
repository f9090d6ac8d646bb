package main

import (
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvState is one key's state: absent, or present with a value. Every value written in a
// run is unique, so comparing values is comparing versions.
type kvState struct {
	Present bool
	Value   string
}

var absent = kvState{}

func (s kvState) String() string {
	if !s.Present {
		return "absent"
	}
	return fmt.Sprintf("%q", s.Value)
}

type opKind uint8

const (
	opRead opKind = iota
	opWrite
	opDelete
	opCAS
)

// outcome of a mutation. Reads are always definite: an undecided read is dropped.
type outcome uint8

const (
	outOK outcome = iota
	outFailed
	outUnknown
)

type kvInput struct {
	Kind   opKind
	Key    string
	Value  string  // the new value of a write or CAS
	Expect kvState // the condition of a CAS
}

type kvOutput struct {
	Outcome outcome
	Read    kvState // what a read saw
}

// step is the per-key sequential specification. It returns every state the key can be in
// after the operation, none when the operation's output is impossible from state s.
func step(s kvState, in kvInput, out kvOutput) []kvState {
	switch in.Kind {
	case opRead:
		if out.Read == s {
			return []kvState{s}
		}
		return nil
	case opWrite, opDelete:
		next := absent
		if in.Kind == opWrite {
			next = kvState{Present: true, Value: in.Value}
		}
		if out.Outcome == outUnknown {
			return []kvState{s, next}
		}
		return []kvState{next}
	case opCAS:
		holds := s == in.Expect
		next := kvState{Present: true, Value: in.Value}
		switch out.Outcome {
		case outOK:
			if holds {
				return []kvState{next}
			}
		case outFailed:
			if !holds {
				return []kvState{s}
			}
		case outUnknown:
			if holds {
				return []kvState{s, next}
			}
			return []kvState{s}
		}
		return nil
	}
	panic(fmt.Sprintf("unknown op kind %d", in.Kind))
}

// partitionByKey splits a history by key, keys in sorted order so that partition i of the
// checker's result can be mapped back to its key (see illegalKeys).
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(kvInput).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		parts[i] = byKey[k]
	}
	return parts
}

func describeOperation(input, output interface{}) string {
	in, out := input.(kvInput), output.(kvOutput)
	result := map[outcome]string{outOK: "ok", outFailed: "failed", outUnknown: "?"}[out.Outcome]
	switch in.Kind {
	case opRead:
		return fmt.Sprintf("read(%s) -> %s", in.Key, out.Read)
	case opWrite:
		return fmt.Sprintf("write(%s, %q) -> %s", in.Key, in.Value, result)
	case opDelete:
		return fmt.Sprintf("delete(%s) -> %s", in.Key, result)
	default:
		return fmt.Sprintf("cas(%s, %s -> %q) -> %s", in.Key, in.Expect, in.Value, result)
	}
}

// kvModel is the model handed to porcupine. Unknown outcomes make it nondeterministic.
var kvModel = (&porcupine.NondeterministicModel{
	Partition: partitionByKey,
	Init:      func() []interface{} { return []interface{}{absent} },
	Step: func(state, input, output interface{}) []interface{} {
		next := step(state.(kvState), input.(kvInput), output.(kvOutput))
		states := make([]interface{}, len(next))
		for i, s := range next {
			states[i] = s
		}
		return states
	},
	Hash: func(state interface{}) uint64 {
		s := state.(kvState)
		if !s.Present {
			return 0
		}
		h := fnv.New64a()
		h.Write([]byte(s.Value))
		return h.Sum64() | 1
	},
	DescribeOperation: describeOperation,
	DescribeState:     func(state interface{}) string { return state.(kvState).String() },
	DescribeOperationMetadata: func(info interface{}) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}).ToModel()

// verdict is what check found.
type verdict struct {
	result      porcupine.CheckResult
	illegalKeys []string
	info        porcupine.LinearizationInfo // for the visualization, if asked for or illegal
	hasInfo     bool
}

// check decides the history within timeout. A verbose check of the whole history waits
// for every key and can take far longer than the verdict, so it is left for last: the
// plain check stops at the first illegal key, each key is then rechecked alone to name
// it (the search for one key is the same alone, so it ends as fast), and only the
// illegal keys are checked verbosely for the visualization.
func check(history []porcupine.Operation, timeout time.Duration, wantInfo bool) verdict {
	start := time.Now()
	v := verdict{result: porcupine.CheckOperationsTimeout(kvModel, history, timeout)}
	if v.result != porcupine.Illegal && !wantInfo {
		return v
	}
	shown := history
	if v.result == porcupine.Illegal {
		grace := 2*time.Since(start) + time.Second
		parts := partitionByKey(history)
		illegal := make([]bool, len(parts))
		var wg sync.WaitGroup
		for i, part := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				illegal[i] = porcupine.CheckOperationsTimeout(kvModel, part, grace) == porcupine.Illegal
			}()
		}
		wg.Wait()
		shown = nil
		for i, part := range parts {
			if illegal[i] {
				v.illegalKeys = append(v.illegalKeys, part[0].Input.(kvInput).Key)
				shown = append(shown, part...)
			}
		}
		if shown == nil {
			shown = history // not one key failed again in time: show them all
		}
	}
	left := max(timeout-time.Since(start), time.Second)
	_, v.info = porcupine.CheckOperationsVerbose(kvModel, shown, left)
	v.hasInfo = true
	return v
}

package main

import (
	"errors"
	"fmt"
	"github.com/tcpshift/tcpshift/internal/bpfmem"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// progNames are tcpshift's programs that run for connections, in the
// report's order. The loader pins each one's link as "<program>_link" in
// the namespace's pin directory: that finds this benchmark's programs and
// no other tcpshift's on the machine.
var progNames = []string{
	bpf.TcpshiftProgTcpshiftLookup,
	bpf.TcpshiftProgTcpshiftConnect4,
	bpf.TcpshiftProgTcpshiftConnect6,
	bpf.TcpshiftProgTcpshiftGetpeername4,
	bpf.TcpshiftProgTcpshiftGetpeername6,
	bpf.TcpshiftProgTcpshiftSockops,
}

// progCounter is a program's run-time statistics at one moment (kernel BPF
// stats, on while the benchmark runs).
type progCounter struct {
	id      ebpf.ProgramID
	runtime time.Duration
	runs    uint64
}

// progCounters reads the counters of every tcpshift program, by name.
func (w *world) progCounters() (map[string]progCounter, error) {
	out := map[string]progCounter{}
	var errs []error
	for _, name := range progNames {
		c, err := pinnedProgCounter(filepath.Join(w.tg.Dir, name+"_link"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		out[name] = c
	}
	return out, errors.Join(errs...)
}

func pinnedProgCounter(pin string) (progCounter, error) {
	id, runtime, runs, err := bpfmem.ProgStats(pin)
	return progCounter{id, runtime, runs}, err
}

// bpfUse adds up the programs' run time and runs over a path's
// short-connection runs, and the connections those runs made.
type bpfUse struct {
	runtime map[string]time.Duration
	runs    map[string]uint64
	conns   int
}

// add counts one run: the counters before and after it and its
// connections. A program replaced in between (an apply) cannot be
// compared and makes the run count for nothing.
func (u *bpfUse) add(before, after map[string]progCounter, conns int) error {
	for name, a := range after {
		if b, ok := before[name]; !ok || b.id != a.id {
			return fmt.Errorf("%s was replaced during the run", name)
		}
	}
	if u.runtime == nil {
		u.runtime, u.runs = map[string]time.Duration{}, map[string]uint64{}
	}
	for name, a := range after {
		b := before[name]
		u.runtime[name] += a.runtime - b.runtime
		u.runs[name] += a.runs - b.runs
	}
	u.conns += conns
	return nil
}

// progResult is one program's cost over a path's short-connection runs.
type progResult struct {
	Program     string  `json:"program"`
	RunTimeNs   int64   `json:"run_time_ns"`
	Runs        uint64  `json:"run_count"`
	NsPerRun    float64 `json:"ns_per_run"`
	RunsPerConn float64 `json:"runs_per_connection"`
	NsPerConn   float64 `json:"ns_per_connection"` // run time / connections
}

// results returns each program's figures, in progNames' order, and the
// run time of all of them per connection.
func (u *bpfUse) results() (progs []progResult, nsPerConn float64) {
	if u.conns == 0 {
		return nil, 0
	}
	var total time.Duration
	for _, name := range progNames {
		runs, ok := u.runs[name]
		if !ok {
			continue
		}
		rt := u.runtime[name]
		total += rt
		r := progResult{Program: name, RunTimeNs: rt.Nanoseconds(), Runs: runs,
			RunsPerConn: float64(runs) / float64(u.conns), NsPerConn: float64(rt.Nanoseconds()) / float64(u.conns)}
		if runs > 0 {
			r.NsPerRun = float64(rt.Nanoseconds()) / float64(runs)
		}
		progs = append(progs, r)
	}
	return progs, float64(total.Nanoseconds()) / float64(u.conns)
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func cores() int { return runtime.NumCPU() }

// pathResult is everything measured through one path. CPU figures are
// the benchmark's cgroup's (every process of the benchmark is in it);
// the machine's are there to show what the cgroup leaves out.
type pathResult struct {
	Name           string         `json:"name"`
	Note           string         `json:"note"`
	Skipped        string         `json:"skipped,omitempty"` // why the path was not measured
	Gbps1          []float64      `json:"iperf3_1_stream_gbps"`
	Gbps4          []float64      `json:"iperf3_4_streams_gbps"`
	CPUPerGB       []float64      `json:"cpu_seconds_per_gb"` // cgroup, 1-stream runs
	MachinePerGB   []float64      `json:"machine_cpu_seconds_per_gb"`
	Rate           []float64      `json:"connections_per_second"`
	P50us          []float64      `json:"p50_us"`
	P99us          []float64      `json:"p99_us"`
	Failed         int            `json:"failed_short_connections"`
	Errors         map[string]int `json:"errors,omitempty"`      // why connections failed
	CPUPerConn     []float64      `json:"cpu_us_per_connection"` // cgroup
	MachinePerConn []float64      `json:"machine_cpu_us_per_connection"`
	ServerCPU      []float64      `json:"proxy_cpu_us_per_connection,omitempty"` // the proxy process alone
	ClientCPU      []float64      `json:"client_cpu_us_per_connection"`          // the load generator
	BackendCPU     []float64      `json:"backends_cpu_us_per_connection"`        // both tcp-echo servers
	Busy           []float64      `json:"machine_busy_share"`                    // of all CPUs, over a short-connection run
	Split          map[string]int `json:"split"`                                 // who answered the short connections
	IperfSplit     map[string]int `json:"iperf3_split"`
	// BPF: tcpshift's programs over the short-connection runs.
	BPF          []progResult `json:"bpf_programs,omitempty"`
	BPFNsPerConn float64      `json:"bpf_ns_per_connection,omitempty"` // all programs
	WeightUs     []float64    `json:"weight_change_visible_us,omitempty"`
	FlipFailed   *int         `json:"failed_during_flips,omitempty"`
	FlipCount    int          `json:"flips,omitempty"`
	FlipConns    int          `json:"connections_during_flips,omitempty"`
	WeightMethod string       `json:"weight_change_method"`
	Problems     []string     `json:"problems,omitempty"`
}

type results struct {
	Date     string `json:"date"`
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	Settings string `json:"settings"`
	// Machine names what the run ran on, and the commit measured.
	Machine machine `json:"machine"`
	// Smoke: a seconds-long run (make bench-smoke), not figures to cite.
	Smoke bool `json:"smoke,omitempty"`
	// IdleCPU is what the cgroup used while nothing was measured.
	IdleCPU float64       `json:"idle_cgroup_cpu_ms_per_second"`
	Paths   []*pathResult `json:"paths"`
	// RateOnly: only the short-connection runs were measured (-rate-only).
	RateOnly bool `json:"rate_only,omitempty"`
}

// progress prints one line that the next call overwrites.
type progress struct{ step, total int }

func (p *progress) show(pathName, what string) {
	p.step++
	fmt.Fprintf(os.Stderr, "\r\033[K[%3d/%d] %-23s %s", p.step, p.total, pathName, what)
}

func (w *world) measureAll() (*results, error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	res := &results{
		Date:     time.Now().UTC().Format(time.RFC3339),
		Kernel:   unix.ByteSliceToString(uts.Release[:]),
		CPUs:     cores(),
		RateOnly: w.s.rateOnly,
		Smoke:    w.s.smoke,
		Machine:  thisMachine(),
		Settings: fmt.Sprintf("%d repetitions, iperf3 %v per run, short connections %v per run with %d workers after a %v pause, %d weight flips", w.s.reps, w.s.iperfTime, w.s.rateTime, w.s.workers, w.s.settle, w.s.flips),
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run-time stats: %w", err)
	}
	defer stats.Close()
	idle := time.Second
	if w.s.smoke {
		idle = 300 * time.Millisecond
	}
	if res.IdleCPU, err = w.idleCPU(idle); err != nil {
		return nil, err
	}

	var measured []*path
	byPath := map[string]*pathResult{}
	use := map[string]*bpfUse{} // over the short-connection runs
	for _, p := range paths {
		r := &pathResult{Name: p.name, Note: p.note, Skipped: p.skip, Split: map[string]int{}, IperfSplit: map[string]int{}}
		res.Paths = append(res.Paths, r)
		if p.skip == "" {
			measured = append(measured, p)
			byPath[p.name], use[p.name] = r, &bpfUse{}
		}
	}
	steps := 3*w.s.reps + 2
	switch {
	case w.s.rateOnly:
		steps = w.s.reps
	case w.s.weightOnly:
		steps = 2
	}
	pr := &progress{total: len(measured) * steps}
	// Repetitions go round the paths, so whatever drifts during the run
	// (heat, kernel state) weighs on every path alike.
	for rep := range w.s.reps {
		if w.s.weightOnly {
			break
		}
		for _, p := range measured {
			w.cur = p
			r := byPath[p.name]
			for _, streams := range []int{1, 4} {
				if w.s.rateOnly {
					break
				}
				pr.show(p.name, fmt.Sprintf("iperf3 -P %d, run %d/%d", streams, rep+1, w.s.reps))
				run, err := w.iperf(p, streams, rep)
				if err != nil {
					return nil, fmt.Errorf("%s: iperf3 -P %d: %w", p.name, streams, err)
				}
				r.IperfSplit[run.who]++
				if streams == 1 {
					r.Gbps1 = append(r.Gbps1, run.gbps)
					r.CPUPerGB = append(r.CPUPerGB, run.cpuPerGB)
					r.MachinePerGB = append(r.MachinePerGB, run.machinePerGB)
				} else {
					r.Gbps4 = append(r.Gbps4, run.gbps)
				}
			}
			pr.show(p.name, fmt.Sprintf("short connections, run %d/%d", rep+1, w.s.reps))
			// An iperf3 run slows the seconds after it on this machine,
			// more after a faster one (docs/benchmarks): let that pass,
			// for every path alike.
			time.Sleep(w.s.settle)
			if err := w.shortConns(p, r, use[p.name]); err != nil {
				return nil, fmt.Errorf("%s: short connections: %w", p.name, err)
			}
		}
	}
	for _, p := range measured {
		w.cur = p
		r := byPath[p.name]
		r.BPF, r.BPFNsPerConn = use[p.name].results()
		if p.noAcct {
			if err := w.checkNoAccounting(p); err != nil {
				r.problem(err.Error())
			}
		}
		if w.s.rateOnly {
			continue
		}
		// A peer misbehaving here is a result, not a reason to throw the
		// whole run away.
		pr.show(p.name, fmt.Sprintf("%d weight changes to the first following connection", w.s.changes))
		if err := w.weightChange(p, r); err != nil {
			r.problem("weight change: " + err.Error())
		}
		pr.show(p.name, fmt.Sprintf("%d weight flips under load", w.s.flips))
		if err := w.flipsUnderLoad(p, r); err != nil {
			r.problem("flips: " + err.Error())
		}
	}
	fmt.Fprintf(os.Stderr, "\r\033[Kdone: %d paths\n", len(measured))
	return res, nil
}

// shortConns runs the load generator through p once and records the rate,
// latency, split, the cgroup's CPU per connection and the BPF programs' run
// time. The CPU window sits inside the BPF one: reading the programs'
// counters is the benchmark's work, not the path's.
func (w *world) shortConns(p *path, r *pathResult, use *bpfUse) error {
	before, berr := w.progCounters()
	cpu0, err := w.cpuNow()
	if err != nil {
		return err
	}
	server0, backends0 := w.serverCPU(p), procCPU(w.backends)
	start := monotonic()
	lg, err := w.loadgen(p, w.s.rateTime)
	if err != nil {
		return err
	}
	if err := w.mark(p, start, monotonic(), lg.Conns); err != nil {
		return err
	}
	cpu, err := w.cpuNow()
	if err != nil {
		return err
	}
	server, backends := w.serverCPU(p), procCPU(w.backends)
	after, aerr := w.progCounters()
	if err := errors.Join(berr, aerr); err != nil {
		r.problem("BPF run-time stats: " + err.Error())
	}
	if err := use.add(before, after, lg.Conns); err != nil {
		r.problem("BPF run-time stats: " + err.Error())
	}
	if lg.Conns > 0 {
		cg, machine := cpu.since(cpu0)
		r.CPUPerConn = append(r.CPUPerConn, cg*1e6/float64(lg.Conns))
		r.MachinePerConn = append(r.MachinePerConn, machine*1e6/float64(lg.Conns))
		if _, ok := w.servers[p.name]; ok {
			r.ServerCPU = append(r.ServerCPU, (server-server0)*1e6/float64(lg.Conns))
		}
		r.ClientCPU = append(r.ClientCPU, lg.cpu*1e6/float64(lg.Conns))
		r.BackendCPU = append(r.BackendCPU, (backends-backends0)*1e6/float64(lg.Conns))
		r.Busy = append(r.Busy, machine/cpu.at.Sub(cpu0.at).Seconds()/float64(cores()))
	}
	r.Rate = append(r.Rate, float64(lg.Conns)/lg.Seconds)
	r.P50us = append(r.P50us, lg.P50us)
	r.P99us = append(r.P99us, lg.P99us)
	r.Failed += lg.Failed
	r.addErrors(lg.Errors)
	for k, v := range lg.Counts {
		r.Split[k] += v
	}
	return nil
}

// monotonic is CLOCK_MONOTONIC in seconds: the clock of `perf record -k
// CLOCK_MONOTONIC`, so that a profile can be cut at the marks.
func monotonic() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// mark appends a short-connection run's window to the -marks file (when
// asked for): path, start and end (CLOCK_MONOTONIC seconds), connections.
func (w *world) mark(p *path, start, end float64, conns int) error {
	if w.s.marks == "" {
		return nil
	}
	f, err := os.OpenFile(w.s.marks, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s %.6f %.6f %d\n", p.name, start, end, conns)
	return errors.Join(err, f.Close())
}

// iperfRun is one iperf3 run's outcome.
type iperfRun struct {
	gbps                   float64
	cpuPerGB, machinePerGB float64 // CPU seconds per GB received
	who                    string  // the backend that served it
}

// iperf runs one iperf3 client through p, for repetition rep.
func (w *world) iperf(p *path, streams, rep int) (iperfRun, error) {
	if p.mode == "lookup" {
		if err := w.apply(); err != nil { // iperf3 reopened its listener
			return iperfRun{}, err
		}
	}
	time.Sleep(1100 * time.Millisecond) // past the 1 s affinity of the last run
	host, port, who := p.iperfTarget(rep)
	secs := strconv.Itoa(int(w.s.iperfTime.Seconds()))
	cmd := exec.Command("iperf3", "-c", host, "-p", port, "-t", secs, "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "3000")
	var out bytes.Buffer
	cmd.Stdout = &out
	cpu0, err := w.cpuNow()
	if err != nil {
		return iperfRun{}, err
	}
	if err := w.ns.Do(cmd.Start); err != nil {
		return iperfRun{}, err
	}
	err = cmd.Wait()
	cpu, cerr := w.cpuNow()
	if cerr != nil {
		return iperfRun{}, cerr
	}
	var rep3 struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &rep3); jerr != nil || err != nil || rep3.Error != "" {
		return iperfRun{}, fmt.Errorf("%v %v %s", err, jerr, rep3.Error)
	}
	if who == "" {
		who = w.iperfBackend()
	}
	gb := rep3.End.SumReceived.Bytes / 1e9
	cg, machine := cpu.since(cpu0)
	return iperfRun{gbps: rep3.End.SumReceived.BitsPerSecond / 1e9, cpuPerGB: cg / gb, machinePerGB: machine / gb, who: who}, nil
}

// iperfBackend tells which iperf3 server served the last run, from the
// servers' logs: each prints a line per test it accepts.
func (w *world) iperfBackend() string {
	best, bestTime := "", time.Time{}
	for i, name := range []string{"v1", "v2"} {
		st, err := os.Stat(filepath.Join(w.dir, fmt.Sprintf("iperf3%d.log", i)))
		if err == nil && st.ModTime().After(bestTime) {
			best, bestTime = name, st.ModTime()
		}
	}
	return best
}

// serverCPU returns the CPU seconds a path's proxy process and its direct
// children (nginx's workers) have used so far.
func (w *world) serverCPU(p *path) float64 {
	cmd, ok := w.servers[p.name]
	if !ok {
		return 0
	}
	return procCPU([]*exec.Cmd{cmd})
}

// procCPU returns the CPU seconds the processes of cmds and their direct
// children have used so far.
func procCPU(cmds []*exec.Cmd) float64 {
	pids := map[int]bool{}
	for _, c := range cmds {
		pids[c.Process.Pid] = true
	}
	entries, _ := os.ReadDir("/proc")
	var total float64
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		self, _ := strconv.Atoi(e.Name())
		ppid, _ := strconv.Atoi(f[1])
		if !pids[self] && !pids[ppid] {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

// loadgen runs the load generator through p for d, as a child of the
// benchmark: inside the namespace and the cgroup.
func (w *world) loadgen(p *path, d time.Duration) (*loadgenResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addrs, weights := p.echoTargets()
	ws := make([]string, len(weights))
	for i, v := range weights {
		ws[i] = strconv.Itoa(v)
	}
	cmd := exec.Command(self, "loadgen", "-addr", strings.Join(addrs, ","), "-weights", strings.Join(ws, ","),
		"-duration", d.String(), "-workers", strconv.Itoa(w.s.workers))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := w.ns.Do(cmd.Start); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, errb.String())
	}
	var r loadgenResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, err
	}
	r.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return &r, nil
}

// weightChange measures, n times, the time from the start of a weight
// write (all to v1 → all to v2) to the start of the first connection that v2
// answers. A prober opens short connections back to back all along, so a
// change counts as visible when the data path follows it, even while the
// write itself has not returned yet (replacing an inner map waits for an RCU
// grace period before the syscall returns). The prober's connections take
// about 100 µs each: that is the resolution (a change lands, on average,
// half a probe before the next probe starts).
func (w *world) weightChange(p *path, r *pathResult) error {
	change := p.flip
	r.WeightMethod = "map write (Go API)"
	switch {
	case p.direct():
		r.WeightMethod = "n/a"
		return nil
	case strings.HasPrefix(p.name, "haproxy"):
		r.WeightMethod = "runtime API (set weight)"
	case change == nil:
		change = p.reload
		r.WeightMethod = "config rewrite + reload (SIGHUP)"
	}
	n := w.s.changes
	type probe struct {
		start time.Time
		who   string
	}
	probes := make(chan probe, 1<<16)
	stop := make(chan struct{})
	done := make(chan struct{})
	addr := p.echoAddr()
	go func() {
		defer close(done)
		// The prober enters the namespace once, not once per probe (two
		// setns calls and a thread switch each): a probe is then one
		// connection and nothing else, which sets the resolution.
		w.ns.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				t := time.Now()
				if who, err := once(d, addr); err == nil {
					probes <- probe{t, who}
				}
			}
		})
	}()
	defer func() {
		close(stop)
		<-done
	}()
	// next returns the first probe started at or after t that who answered.
	next := func(t time.Time, who string) (time.Time, error) {
		timeout := time.After(10 * time.Second)
		for {
			select {
			case pr := <-probes:
				if pr.who == who && !pr.start.Before(t) {
					return pr.start, nil
				}
			case <-timeout:
				return time.Time{}, fmt.Errorf("no connection reached %s within 10 s of the weight change", who)
			}
		}
	}
	for range n {
		if err := change(w, 100, 0); err != nil {
			return err
		}
		if _, err := next(time.Now(), "one"); err != nil {
			return err
		}
		t0 := time.Now()
		if err := change(w, 0, 100); err != nil {
			return err
		}
		seen, err := next(t0, "two")
		if err != nil {
			return err
		}
		r.WeightUs = append(r.WeightUs, float64(seen.Sub(t0).Nanoseconds())/1e3)
	}
	return change(w, 80, 20)
}

// flipsUnderLoad flips the weights 80/20 ↔ 20/80 while the load generator
// runs and counts the connections that failed.
func (w *world) flipsUnderLoad(p *path, r *pathResult) error {
	if p.flip == nil {
		return nil // the direct paths; nginx can only reload (see weightChange)
	}
	d := max(w.s.rateTime, 2*time.Second)
	type lgOut struct {
		r   *loadgenResult
		err error
	}
	done := make(chan lgOut, 1)
	go func() {
		r, err := w.loadgen(p, d)
		done <- lgOut{r, err}
	}()
	time.Sleep(100 * time.Millisecond)
	gap := (d / 2) / time.Duration(w.s.flips)
	for i := range w.s.flips {
		v1, v2 := uint64(80), uint64(20)
		if i%2 == 0 {
			v1, v2 = 20, 80
		}
		if err := p.flip(w, v1, v2); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	if err := p.flip(w, 80, 20); err != nil {
		return err
	}
	out := <-done
	if out.err != nil {
		return out.err
	}
	failed := out.r.Failed
	r.addErrors(out.r.Errors)
	r.FlipFailed, r.FlipCount, r.FlipConns = &failed, w.s.flips, out.r.Conns
	return nil
}

// problem notes something that went wrong once, however often it did.
func (r *pathResult) problem(msg string) {
	if !slices.Contains(r.Problems, msg) {
		r.Problems = append(r.Problems, msg)
	}
}

func (r *pathResult) addErrors(errs map[string]int) {
	for k, v := range errs {
		if r.Errors == nil {
			r.Errors = map[string]int{}
		}
		r.Errors[k] += v
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Command bench measures tcpshift against a direct connection, HAProxy and
// nginx on one machine, in private network namespaces: iperf3 throughput,
// short-connection rate and latency, CPU per GB and per connection (from the
// benchmark's own cgroup), the run time of each of tcpshift's BPF programs,
// weight-change latency and failures across weight flips. Ratios are to
// direct, a client that splits 80/20 over the two backends itself. `make
// bench` runs it and writes docs/benchmarks/; `make bench-smoke` runs it for
// seconds, to keep it working.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// settings of one run.
type settings struct {
	reps       int           // repetitions of each measurement
	iperfTime  time.Duration // length of one iperf3 run
	rateTime   time.Duration // length of one short-connection run
	settle     time.Duration // pause before each short-connection run
	workers    int           // concurrent short-connection clients
	flips      int           // weight flips under load
	out        string        // where results go
	bin        string        // tcpshift and tcp-echo binaries
	smoke      bool
	rateOnly   bool   // only the short-connection runs
	weightOnly bool   // only the weight changes and the flips
	changes    int    // weight changes timed per path
	marks      string // where to append each short-connection run's window
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := loadgenMain(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "\nbench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var s settings
	flag.BoolVar(&s.smoke, "smoke", false, "seconds long: one repetition of everything, short runs")
	flag.IntVar(&s.reps, "reps", 5, "repetitions of each measurement")
	flag.DurationVar(&s.iperfTime, "iperf-time", 5*time.Second, "length of one iperf3 run")
	flag.DurationVar(&s.rateTime, "rate-time", 3*time.Second, "length of one short-connection run")
	flag.DurationVar(&s.settle, "settle", 5*time.Second, "pause before each short-connection run, so that it does not measure what the run before left behind")
	flag.IntVar(&s.workers, "workers", 4, "concurrent short-connection clients")
	flag.IntVar(&s.flips, "flips", 1000, "weight flips under load")
	flag.StringVar(&s.out, "out", "docs/benchmarks", "directory for results.md, results.json and results.png")
	flag.StringVar(&s.bin, "bin", "bin", "directory with the tcpshift and tcp-echo binaries")
	flag.BoolVar(&s.rateOnly, "rate-only", false, "measure only the short-connection runs (no iperf3, weight changes or flips, no scale step): for profiling a path's connection rate")
	flag.StringVar(&s.marks, "marks", "", "append each short-connection run's path, start and end (CLOCK_MONOTONIC seconds, as `perf record -k CLOCK_MONOTONIC` stamps samples) and connections to this file, to cut a system-wide profile per path")
	flag.BoolVar(&s.weightOnly, "weight-only", false, "measure only the weight changes (-changes of them) and the flips under load, print them and write nothing: for A/B runs of the write path")
	flag.IntVar(&s.changes, "changes", 50, "weight changes timed per path (write to the first connection that follows it)")
	only := flag.String("paths", "", "comma-separated paths to measure (direct is always measured); all when empty")
	scaleOnly := flag.Bool("scale-only", false, "run only the scale step (maps' memory and BPF time per selection at 1, 10 000 services and a 1000-endpoint subset); writes scale.md")
	flag.Parse()
	if s.smoke {
		// Short unless asked otherwise.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, apply := range map[string]func(){
			"reps":       func() { s.reps = 1 },
			"iperf-time": func() { s.iperfTime = time.Second },
			"rate-time":  func() { s.rateTime = 500 * time.Millisecond },
			"settle":     func() { s.settle = 200 * time.Millisecond },
			"flips":      func() { s.flips = 100 },
			"changes":    func() { s.changes = 5 },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	if *only != "" {
		keep := map[string]bool{"direct": true}
		for _, name := range strings.Split(*only, ",") {
			keep[strings.TrimSpace(name)] = true
		}
		var picked []*path
		for _, p := range paths {
			if keep[p.name] {
				picked = append(picked, p)
				delete(keep, p.name)
			}
		}
		for name := range keep {
			return fmt.Errorf("-paths: no path %q", name)
		}
		paths = picked
	}
	if s.reps < 1 || s.iperfTime < time.Second || s.rateTime <= 0 || s.settle < 0 || s.workers < 1 || s.flips < 1 || s.changes < 1 || s.rateOnly && s.weightOnly {
		return fmt.Errorf("bad settings: %+v", s)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmark needs root (network namespaces, BPF): run sudo make bench")
	}
	var err error
	if s.bin, err = filepath.Abs(s.bin); err != nil {
		return err
	}
	if *scaleOnly {
		return runScale(s)
	}

	w, err := newWorld(s)
	if err != nil {
		return err
	}
	defer func() {
		if w != nil {
			w.close()
		}
	}()
	res, err := w.measureAll()
	if err != nil {
		return err
	}
	if s.weightOnly {
		printWeightChanges(res)
		return nil
	}
	if err := writeResults(s, res); err != nil {
		return err
	}
	if s.rateOnly {
		return nil
	}
	// The scale step runs in a namespace of its own, on a quiet machine.
	w.close()
	w = nil
	return runScale(s)
}

// runScale runs the scale step (small in a smoke run) and writes scale.md.
func runScale(s settings) error {
	services, big, conns := 10000, 1000, 2000
	if s.smoke {
		services, big, conns = 1000, 100, 200
	}
	fmt.Fprintf(os.Stderr, "\r\033[Kscale: %d services, a subset of %d endpoints\n", services, big)
	r, err := measureScale(s, services, big, conns)
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	md := scaleMarkdown(r)
	fmt.Print(md)
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.out, "scale.md"), []byte(md), 0o644)
}

package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func writeResults(s settings, res *results) error {
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.out, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := markdown(res)
	if err := os.WriteFile(filepath.Join(s.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := chart(res, filepath.Join(s.out, "results.png")); err != nil {
		return err
	}
	if err := archiveRun(filepath.Join(s.out, "runs"), res, md, js); err != nil {
		return fmt.Errorf("keep the run: %w", err)
	}
	fmt.Print(md)
	fmt.Fprintf(os.Stderr, "results: %s/results.{md,json,png}\n", s.out)
	return nil
}

func find(res *results, name string) *pathResult {
	for _, p := range res.Paths {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// cell is "median (ratio×) min–max".
func cell(xs []float64, direct []float64, unit string) string {
	if len(xs) == 0 {
		return "–"
	}
	m := median(xs)
	out := fmt.Sprintf("%.*f%s", prec(m), m, unit)
	if d := median(direct); d > 0 {
		out += fmt.Sprintf(" (%.2f×)", m/d)
	}
	if len(xs) > 1 {
		out += fmt.Sprintf(" %.*f–%.*f", prec(m), slices.Min(xs), prec(m), slices.Max(xs))
	}
	return out
}

func prec(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}

func split(m map[string]int) string {
	total := m["one"] + m["two"] + m["v1"] + m["v2"]
	if total == 0 {
		return "–"
	}
	v1, v2 := m["one"]+m["v1"], m["two"]+m["v2"]
	return fmt.Sprintf("%d/%d (%.1f%% v2)", v1, v2, float64(v2)*100/float64(total))
}

// measured returns the paths that were measured, in order.
func measured(res *results) []*pathResult {
	var out []*pathResult
	for _, p := range res.Paths {
		if p.Skipped == "" {
			out = append(out, p)
		}
	}
	return out
}

func markdown(res *results) string {
	var b strings.Builder
	direct := find(res, "direct")
	fmt.Fprintf(&b, "# tcpshift benchmark\n\n%s, kernel %s, %d CPUs, commit %s, machine %s (below). %s.\n\n", res.Date, res.Kernel, res.CPUs,
		res.Machine.Commit, res.Machine.Fingerprint(), res.Settings)
	b.WriteString("Median (ratio to direct, same run) and min–max over the repetitions. The service is 80/20 between two backends on loopback, inside a private network namespace.\n\n")
	b.WriteString("**direct** is the fair limit, and every ratio is to it: its client splits the connections over the same two backends itself, with no proxy or redirection in the way, " +
		"4 of every 5 short connections to v1 and 1 to v2, interleaved (v1 v1 v2 v1 v1). **direct-1backend** sends everything to v1: a reference only " +
		"(one warm backend is faster than two). iperf3 cannot split one test over two servers, and the tcpshift paths keep a whole test on one backend too " +
		"(1 s affinity), so direct splits iperf3 by test: in every 5 repetitions, 4 go to v1 and the 5th to v2, its -P 1 and -P 4 runs alike " +
		"(with fewer than 5 repetitions all go to v1); direct-1backend always uses v1. " +
		"Both direct paths run with tcpshift's programs attached (to the namespace and the benchmark's cgroup) and no frontend for their destination, " +
		"so the ratios price a service hit over a miss; the BPF table shows what a miss costs every connection.\n\n")
	fmt.Fprintf(&b, "CPU is the benchmark's own cgroup v2 (cpu.stat usage_usec), which holds every process of the benchmark: the backends, every proxy, "+
		"the iperf3 and load-generator clients and the benchmark itself. Idle, the cgroup used %.1f ms of CPU per second (backends and proxies waiting). "+
		"Kernel work outside any of its processes (softirq in ksoftirqd or on an idle CPU, kernel workers) is not in it. "+
		"The column \"in cgroup\" is the cgroup's share of the whole machine's busy CPU over the short-connection runs: "+
		"near 100%% says little escaped; lower, either the kernel did work elsewhere or something else ran on the machine "+
		"(results.json has the machine's figures too).\n\n", res.IdleCPU)
	b.WriteString("| path | iperf3 1 stream Gbit/s | iperf3 4 streams Gbit/s | short conn/s | p50 µs | p99 µs | CPU s per GB | CPU µs per short conn (all / proxy process) | in cgroup | split v1/v2 (short) | failed |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range measured(res) {
		cpu := cell(p.CPUPerConn, direct.CPUPerConn, "")
		if len(p.ServerCPU) > 0 {
			cpu += fmt.Sprintf(" / %.1f", median(p.ServerCPU))
		}
		share := "–"
		if m := median(p.MachinePerConn); m > 0 {
			share = fmt.Sprintf("%.0f%%", median(p.CPUPerConn)*100/m)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", p.Name,
			cell(p.Gbps1, direct.Gbps1, ""), cell(p.Gbps4, direct.Gbps4, ""), cell(p.Rate, direct.Rate, ""),
			cell(p.P50us, nil, ""), cell(p.P99us, nil, ""), cell(p.CPUPerGB, direct.CPUPerGB, ""), cpu, share, split(p.Split), p.Failed)
	}
	b.WriteString("\n| path | how weights change | weight write → first following connection, µs (median, max) | failed connections during flips | iperf3 runs per backend |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, p := range measured(res) {
		wc := "–"
		if len(p.WeightUs) > 0 {
			wc = fmt.Sprintf("%.0f, %.0f", median(p.WeightUs), slices.Max(p.WeightUs))
		}
		flips := "n/a"
		if p.FlipFailed != nil {
			flips = fmt.Sprintf("%d of %d over %d flips", *p.FlipFailed, p.FlipConns, p.FlipCount)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", p.Name, p.WeightMethod, wc, flips, split(p.IperfSplit))
	}
	cpuTable(&b, res)
	bpfTable(&b, res)
	var skipped, problems []string
	for _, p := range res.Paths {
		if p.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("- %s: %s", p.Name, p.Skipped))
		}
		for _, e := range p.Problems {
			problems = append(problems, fmt.Sprintf("- %s: %s", p.Name, e))
		}
	}
	if len(skipped) > 0 {
		b.WriteString("\n## Paths not measured\n\n" + strings.Join(skipped, "\n") + "\n")
	}
	if len(problems) > 0 {
		b.WriteString("\n## Problems during the run\n\n" + strings.Join(problems, "\n") + "\n")
	}
	b.WriteString("\n## Targets\n\nRatios to direct (the fair split), medians.\n\n")
	for _, t := range targets(res) {
		fmt.Fprintf(&b, "- %s\n", t)
	}
	b.WriteString("\n" + machineSection(res.Machine))
	return b.String()
}

// cpuTable writes where each path's short connections spent the machine:
// how busy it was kept and which processes used the CPU.
func cpuTable(b *strings.Builder, res *results) {
	b.WriteString("\n## Where the short connections' CPU went\n\n")
	fmt.Fprintf(b, "Medians over the short-connection runs. With every CPU a path can use busy, its rate is about busy share × %d CPUs ÷ CPU per connection: "+
		"a path is faster by costing less per connection or by keeping more of the machine busy (a client that waits on a queue leaves a CPU idle). "+
		"Busy share is the whole machine's (/proc/stat) over the run. Per connection: all is the benchmark's cgroup; the proxy process, the load generator "+
		"(its own rusage) and the two tcp-echo backends (/proc) are parts of it; the rest is the benchmark itself and kernel work charged to the cgroup "+
		"outside those processes (the process figures are the kernel's tick-sampled times, so the rest can come out slightly below zero). On loopback a sender's kernel also does most of the receiver's work (the softirq runs on the way out), so a process's "+
		"figure includes part of what its peers cost.\n\n", res.CPUs)
	b.WriteString("| path | short conn/s | machine busy | CPU µs per connection: all | proxy process | load generator | backends | rest |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, p := range measured(res) {
		if len(p.CPUPerConn) == 0 {
			continue
		}
		proxy := "–"
		if len(p.ServerCPU) > 0 {
			proxy = fmt.Sprintf("%.1f", median(p.ServerCPU))
		}
		var rest []float64
		for i, all := range p.CPUPerConn {
			x := all - at(p.ClientCPU, i) - at(p.BackendCPU, i) - at(p.ServerCPU, i)
			rest = append(rest, x)
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f%% | %.1f | %s | %.1f | %.1f | %.1f |\n", p.Name, median(p.Rate), median(p.Busy)*100,
			median(p.CPUPerConn), proxy, median(p.ClientCPU), median(p.BackendCPU), median(rest))
	}
}

// at is xs[i], or 0 when xs has no such element (a path without a proxy
// process, results from a benchmark that did not measure it).
func at(xs []float64, i int) float64 {
	if i < len(xs) {
		return xs[i]
	}
	return 0
}

// bpfTable writes each tcpshift program's run time per path.
func bpfTable(b *strings.Builder, res *results) {
	b.WriteString("\n## BPF run time per program\n\n")
	b.WriteString("tcpshift's programs over each path's short-connection runs, from the kernel's BPF run-time stats (on for the whole benchmark: " +
		"they add a clock read on each side of every run). A cell is ns per run / ns per connection (runs per connection); " +
		"ns per connection is the program's total run time divided by the connections. " +
		"Every path runs with the same programs attached, so the direct paths show what a miss costs. " +
		"getpeername runs whenever a socket of the cgroup is asked for its peer: Go's dial asks on the client socket, and accept4 with an address buffer " +
		"runs the hook on the accepted socket, about 2 runs per connection. On the direct paths every one is a miss (no frontend matches); " +
		"on lookup also (nothing to restore); on connect about half are hits (the client's socket, given its frontend back) and half misses (the backend's accepted socket).\n\n")
	b.WriteString("| path |")
	for _, name := range progNames {
		fmt.Fprintf(b, " %s |", name)
	}
	b.WriteString(" all, ns per connection |\n|---|")
	b.WriteString(strings.Repeat("---|", len(progNames)+1) + "\n")
	for _, p := range measured(res) {
		fmt.Fprintf(b, "| %s |", p.Name)
		for _, name := range progNames {
			pr := progOf(p, name)
			switch {
			case pr == nil:
				b.WriteString(" – |")
			case pr.Runs == 0:
				b.WriteString(" 0 runs |")
			default:
				fmt.Fprintf(b, " %.0f / %.0f (%.2f) |", pr.NsPerRun, pr.NsPerConn, pr.RunsPerConn)
			}
		}
		if p.BPF == nil {
			b.WriteString(" – |\n")
		} else {
			fmt.Fprintf(b, " %.0f |\n", p.BPFNsPerConn)
		}
	}
}

// progOf returns a path's figures for one program, nil when not measured.
func progOf(p *pathResult, name string) *progResult {
	for i := range p.BPF {
		if p.BPF[i].Program == name {
			return &p.BPF[i]
		}
	}
	return nil
}

// chart draws throughput and connection rate as ratios to direct (the
// fair split).
func chart(res *results, file string) error {
	p := plot.New()
	p.Title.Text = "tcpshift benchmark: median ratio to direct (client-side 80/20 split)"
	p.Y.Label.Text = "× direct"
	d := find(res, "direct")
	series := []struct {
		name string
		get  func(*pathResult) []float64
		c    color.RGBA
	}{
		{"iperf3 1 stream", func(r *pathResult) []float64 { return r.Gbps1 }, color.RGBA{R: 31, G: 119, B: 180, A: 255}},
		{"iperf3 4 streams", func(r *pathResult) []float64 { return r.Gbps4 }, color.RGBA{R: 255, G: 127, B: 14, A: 255}},
		{"short connections/s", func(r *pathResult) []float64 { return r.Rate }, color.RGBA{R: 44, G: 160, B: 44, A: 255}},
	}
	w := vg.Points(12)
	ps := measured(res)
	names := make([]string, len(ps))
	for i, r := range ps {
		names[i] = r.Name
	}
	for i, s := range series {
		vals := make(plotter.Values, len(ps))
		for j, r := range ps {
			if dm := median(s.get(d)); dm > 0 {
				vals[j] = median(s.get(r)) / dm
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = s.c
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(i-1)
		p.Add(bars)
		p.Legend.Add(s.name, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -1.0
	return p.Save(10*vg.Inch, 5*vg.Inch, file)
}

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

func markdown(res *results) string {
	var b strings.Builder
	direct := find(res, "direct")
	fmt.Fprintf(&b, "# tcpshift benchmark\n\n%s, kernel %s, %d CPUs. %s.\n\n", res.Date, res.Kernel, res.CPUs, res.Settings)
	b.WriteString("Median (ratio to direct, same run) and min–max over the repetitions. The service is 80/20 between two backends on loopback, inside a private network namespace.\n\n")
	b.WriteString("| path | iperf3 1 stream Gbit/s | iperf3 4 streams Gbit/s | short conn/s | p50 µs | p99 µs | CPU s per GB | CPU µs per short conn (all / proxy process) | split v1/v2 (short) | failed |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range res.Paths {
		cpu := cell(p.CPUPerConn, direct.CPUPerConn, "")
		if len(p.ServerCPU) > 0 {
			cpu += fmt.Sprintf(" / %.1f", median(p.ServerCPU))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", p.Name,
			cell(p.Gbps1, direct.Gbps1, ""), cell(p.Gbps4, direct.Gbps4, ""), cell(p.Rate, direct.Rate, ""),
			cell(p.P50us, nil, ""), cell(p.P99us, nil, ""), cell(p.CPUPerGB, direct.CPUPerGB, ""), cpu, split(p.Split), p.Failed)
	}
	b.WriteString("\n| path | how weights change | weight write → first following connection, µs (median, max) | failed connections during flips | BPF ns per selection | sockops ns per call | iperf3 runs per backend |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, p := range res.Paths {
		wc := "–"
		if len(p.WeightUs) > 0 {
			wc = fmt.Sprintf("%.0f, %.0f", median(p.WeightUs), slices.Max(p.WeightUs))
		}
		flips := "n/a"
		if p.FlipFailed != nil {
			flips = fmt.Sprintf("%d of %d over %d flips", *p.FlipFailed, p.FlipConns, p.FlipCount)
		}
		ns := func(v float64) string {
			if v == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", p.Name, p.WeightMethod, wc, flips, ns(p.BPFns), ns(p.SockopsNs), split(p.IperfSplit))
	}
	var problems []string
	for _, p := range res.Paths {
		for _, e := range p.Problems {
			problems = append(problems, fmt.Sprintf("- %s: %s", p.Name, e))
		}
	}
	if len(problems) > 0 {
		b.WriteString("\n## Problems during the run\n\n" + strings.Join(problems, "\n") + "\n")
	}
	b.WriteString("\n## Targets\n\n")
	for _, t := range targets(res) {
		fmt.Fprintf(&b, "- %s\n", t)
	}
	return b.String()
}

// targets checks the targets against the medians, for the paths
// that were measured.
func targets(res *results) []string {
	d := find(res, "direct")
	hp, best := find(res, "haproxy"), find(res, "haproxy")
	if hs := find(res, "haproxy-splice"); hs != nil && (best == nil || median(hs.Gbps1) > median(best.Gbps1)) {
		best = hs
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var out []string
	for _, name := range []string{"tcpshift-lookup", "tcpshift-connect"} {
		if p := find(res, name); p != nil {
			tp, rate := median(p.Gbps1)/median(d.Gbps1), median(p.Rate)/median(d.Rate)
			out = append(out, fmt.Sprintf("%s throughput ≥ 0.97× direct: %.2f× — %s", name, tp, mark(tp >= 0.97)))
			out = append(out, fmt.Sprintf("%s connection rate ≥ 0.95× direct: %.2f× — %s", name, rate, mark(rate >= 0.95)))
		}
	}
	if px := find(res, "tcpshift-proxy"); px != nil && best != nil {
		tp := median(px.Gbps1) / median(best.Gbps1)
		out = append(out, fmt.Sprintf("tcpshift-proxy throughput ≥ 1.5× HAProxy's best (%s): %.2f× — %s", best.Name, tp, mark(tp >= 1.5)))
	}
	if px := find(res, "tcpshift-proxy"); px != nil && hp != nil {
		rate := median(px.Rate) / median(hp.Rate)
		out = append(out, fmt.Sprintf("tcpshift-proxy connection rate ≥ HAProxy's: %.2f× — %s", rate, mark(rate >= 1)))
	}
	for _, p := range res.Paths {
		if !strings.HasPrefix(p.Name, "tcpshift") {
			continue
		}
		m := slices.Max(append([]float64{0}, p.WeightUs...))
		out = append(out, fmt.Sprintf("%s weight change visible in ≤ 1 ms: worst %.0f µs — %s", p.Name, m, mark(m <= 1000 && len(p.WeightUs) > 0)))
		f := -1
		if p.FlipFailed != nil {
			f = *p.FlipFailed
		}
		out = append(out, fmt.Sprintf("%s zero failed connections over %d flips: %d failed — %s", p.Name, p.FlipCount, f, mark(f == 0)))
	}
	return out
}

// chart draws throughput and connection rate as ratios to direct.
func chart(res *results, file string) error {
	p := plot.New()
	p.Title.Text = "tcpshift benchmark: ratio to a direct connection (median)"
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
	names := make([]string, len(res.Paths))
	for i, r := range res.Paths {
		names[i] = r.Name
	}
	for i, s := range series {
		vals := make(plotter.Values, len(res.Paths))
		for j, r := range res.Paths {
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

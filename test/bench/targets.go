package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/bpf"
)

// The targets. Ratios are to direct, the client splitting 80/20
// itself; BPF run times are with the kernel's run-time stats on.
const (
	minRateRatio    = 0.97 // connection rate, lookup and connect
	maxCPURatio     = 1.05 // CPU per connection
	minThroughput   = 0.97 // iperf3, 1 and 4 streams
	maxSelectNs     = 300  // selection program per run, accounting on
	maxSelectNoAcct = 200  // accounting off
	maxPeerMissNs   = 100  // getpeername per run on a socket not tcpshift's
)

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// ratio is median(xs)/median(ref); NaN when either is missing, which
// meets no target.
func ratio(xs, ref []float64) float64 {
	if len(xs) == 0 || median(ref) == 0 {
		return math.NaN()
	}
	return median(xs) / median(ref)
}

// targets checks the targets against the medians, for the paths
// that were measured.
func targets(res *results) []string {
	d := find(res, "direct")
	var out []string
	for _, name := range []string{"tcpshift-lookup", "tcpshift-lookup-noacct", "tcpshift-connect", "tcpshift-connect-noacct"} {
		p := find(res, name)
		if p == nil {
			continue
		}
		if p.Skipped != "" {
			out = append(out, fmt.Sprintf("%s: not measured (see Paths not measured)", name))
			continue
		}
		rate := ratio(p.Rate, d.Rate)
		out = append(out, fmt.Sprintf("%s connection rate ≥ %.2f× direct: %.3f× — %s", name, minRateRatio, rate, mark(rate >= minRateRatio)))
		cpu := ratio(p.CPUPerConn, d.CPUPerConn)
		out = append(out, fmt.Sprintf("%s CPU per connection ≤ %.2f× direct: %.3f× — %s", name, maxCPURatio, cpu, mark(cpu <= maxCPURatio)))
		tp1, tp4 := ratio(p.Gbps1, d.Gbps1), ratio(p.Gbps4, d.Gbps4)
		out = append(out, fmt.Sprintf("%s throughput ≥ %.2f× direct: 1 stream %.3f×, 4 streams %.3f× — %s", name, minThroughput, tp1, tp4, mark(tp1 >= minThroughput && tp4 >= minThroughput)))
		sel := bpf.TcpshiftProgTcpshiftLookup
		if strings.HasPrefix(name, "tcpshift-connect") {
			sel = bpf.TcpshiftProgTcpshiftConnect4
		}
		limit, acct := float64(maxSelectNs), "on"
		if strings.HasSuffix(name, "-noacct") {
			limit, acct = maxSelectNoAcct, "off"
		}
		out = append(out, progTarget(p, sel, limit, "accounting "+acct))
	}
	if d != nil {
		out = append(out, progTarget(d, bpf.TcpshiftProgTcpshiftGetpeername4, maxPeerMissNs, "a miss: direct, no frontend matches"))
	}
	out = append(out, proxyTargets(res)...)
	for _, p := range measured(res) {
		if res.RateOnly || !strings.HasPrefix(p.Name, "tcpshift") {
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

// progTarget checks one program's ns per run on path p against limit.
func progTarget(p *pathResult, prog string, limit float64, when string) string {
	what := fmt.Sprintf("%s %s ≤ %.0f ns per run (%s)", p.Name, prog, limit, when)
	pr := progOf(p, prog)
	if pr == nil || pr.Runs == 0 {
		return what + ": no runs measured — " + mark(false)
	}
	return fmt.Sprintf("%s: %.0f ns — %s", what, pr.NsPerRun, mark(pr.NsPerRun <= limit))
}

// proxyTargets compares tcpshift's proxy with HAProxy.
func proxyTargets(res *results) []string {
	px := find(res, "tcpshift-proxy")
	if px == nil || px.Skipped != "" {
		return nil
	}
	// HAProxy's best: the better of its two configurations, for each figure.
	var fastest, busiest *pathResult
	for _, name := range []string{"haproxy", "haproxy-splice"} {
		h := find(res, name)
		if h == nil || h.Skipped != "" {
			continue
		}
		if fastest == nil || median(h.Gbps1) > median(fastest.Gbps1) {
			fastest = h
		}
		if busiest == nil || median(h.Rate) > median(busiest.Rate) {
			busiest = h
		}
	}
	var out []string
	if fastest != nil && len(px.Gbps1) > 0 {
		tp := ratio(px.Gbps1, fastest.Gbps1)
		out = append(out, fmt.Sprintf("tcpshift-proxy throughput ≥ 1.5× HAProxy's best (%s): %.2f× — %s", fastest.Name, tp, mark(tp >= 1.5)))
	}
	if busiest != nil {
		rate := ratio(px.Rate, busiest.Rate)
		out = append(out, fmt.Sprintf("tcpshift-proxy connection rate ≥ HAProxy's best (%s): %.2f× — %s", busiest.Name, rate, mark(rate >= 1)))
	}
	return out
}

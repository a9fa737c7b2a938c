package main

import (
	"cmp"
	"fmt"
	"github.com/tcpshift/tcpshift/internal/bpfmem"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
)

// The scale step: what the maps cost in kernel memory and what a selection
// costs in BPF time with one service, with ten thousand more, and with a
// subset of a thousand endpoints. It runs in a namespace of its own.

// scaleResult is the scale step's figures.
type scaleResult struct {
	Services, Endpoints, BigSubset int // the sizes measured
	Conns                          int // connections per measurement
	States                         []scaleState
	FirstApply                     time.Duration // of the Services services
	WeightChange                   time.Duration // one service's, among them
}

// scaleState is one state of the maps.
type scaleState struct {
	Name      string
	Memlock   uint64            // every map's memlock, inner tables included
	ByMap     map[string]uint64 // the same, per map (tables: with its inner maps)
	LookupNs  float64           // sk_lookup, per run
	Connect4s float64           // connect4, per run
}

const (
	scaleLookup  = "127.0.0.100:9000"
	scaleConnect = "10.96.0.10:9000"
)

// measureScale runs the scale step: services filler services of 10
// endpoints each, and a subset of bigSubset endpoints.
func measureScale(s settings, services, bigSubset, conns int) (_ *scaleResult, err error) {
	w := &world{s: s}
	defer w.close()
	if err := w.makePrivate("tcpshift-scale"); err != nil {
		return nil, err
	}
	if w.restore, err = loader.JoinCgroup(w.cgroup); err != nil {
		return nil, err
	}
	if w.tg, err = loader.Open(w.ns.Path(), w.bpffs, w.cgroup); err != nil {
		return nil, err
	}
	// Listeners: 10 for the measured services, bigSubset for the big one.
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	listen := func(addr string) error {
		return w.ns.Do(func() error {
			l, err := listener.Listen("tcp", addr)
			if err != nil {
				return err
			}
			lns = append(lns, l)
			go acceptAndClose(l)
			return nil
		})
	}
	for j := range 10 {
		if err := listen(fmt.Sprintf("127.0.0.2:%d", 20000+j)); err != nil {
			return nil, err
		}
	}
	for j := range bigSubset {
		if err := listen(fmt.Sprintf("127.0.0.3:%d", 30000+j)); err != nil {
			return nil, err
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run-time stats: %w", err)
	}
	defer stats.Close()

	res := &scaleResult{Services: services, Endpoints: 10 * services, BigSubset: bigSubset, Conns: conns}
	measure := func(name, text string) error {
		cfg, err := config.Parse("scale.yaml", []byte(text))
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := w.tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{}); err != nil {
			return fmt.Errorf("%s: apply: %w", name, err)
		}
		took := time.Since(start)
		if name == "filler" {
			res.FirstApply = took
			start = time.Now()
			if _, err := w.tg.SetWeights("connect", []loader.Weight{{Subset: "v1", Weight: 3}}); err != nil {
				return err
			}
			res.WeightChange = time.Since(start)
		}
		st := scaleState{Name: name}
		if st.Memlock, st.ByMap, err = bpfmem.MapMemory(w.tg.Dir); err != nil {
			return err
		}
		if st.LookupNs, err = w.perRun(bpf.TcpshiftProgTcpshiftLookup, scaleLookup, conns); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if st.Connect4s, err = w.perRun(bpf.TcpshiftProgTcpshiftConnect4, scaleConnect, conns); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res.States = append(res.States, st)
		return nil
	}
	if err := measure("one", scaleRoutes(0, 0)); err != nil {
		return nil, err
	}
	// The filler last: removing thousands of services costs an RCU grace
	// period each (see maps.Set.DeleteServices); down removes them whole.
	if err := measure("big subset", scaleRoutes(0, bigSubset)); err != nil {
		return nil, err
	}
	if err := measure("filler", scaleRoutes(services, 0)); err != nil {
		return nil, err
	}
	return res, nil
}

// scaleRoutes is the measured services, lookup and connect, with 10
// endpoints, or bigSubset ones when not 0, and services filler
// connect-mode services of 10 endpoints nothing listens on.
func scaleRoutes(services, bigSubset int) string {
	eps := make([]string, 0, 10)
	for j := range 10 {
		eps = append(eps, fmt.Sprintf("127.0.0.2:%d", 20000+j))
	}
	if bigSubset > 0 {
		eps = eps[:0]
		for j := range bigSubset {
			eps = append(eps, fmt.Sprintf("127.0.0.3:%d", 30000+j))
		}
	}
	var b strings.Builder
	b.WriteString("services:\n")
	for _, svc := range []struct{ name, listen, mode string }{{"lookup", scaleLookup, "lookup"}, {"connect", scaleConnect, "connect"}} {
		fmt.Fprintf(&b, "- name: %s\n  listen: %s\n  mode: %s\n  subsets:\n    v1: {endpoints: [%s]}\n  route: [{subset: v1, weight: 1}]\n",
			svc.name, svc.listen, svc.mode, strings.Join(eps, ", "))
	}
	for i := range services {
		fmt.Fprintf(&b, "- name: s%d\n  listen: 10.97.%d.%d:9000\n  mode: connect\n  subsets:\n    v1: {endpoints: [", i, i/250, i%250+1)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "127.1.%d.%d:%d", i/250, i%250+1, 40000+j)
		}
		b.WriteString("]}\n  route: [{subset: v1, weight: 1}]\n")
	}
	return b.String()
}

func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// perRun makes n connections to addr and returns the program's BPF run time
// per run over them.
func (w *world) perRun(prog, addr string, n int) (float64, error) {
	pin := filepath.Join(w.tg.Dir, prog+"_link")
	before, err := pinnedProgCounter(pin)
	if err != nil {
		return 0, err
	}
	for i := range n {
		c, err := w.dial(addr)
		if err != nil {
			return 0, fmt.Errorf("connection %d to %s: %w", i, addr, err)
		}
		c.Close()
	}
	after, err := pinnedProgCounter(pin)
	if err != nil {
		return 0, err
	}
	runs := after.runs - before.runs
	if runs == 0 {
		return 0, fmt.Errorf("%s ran no time for %d connections to %s", prog, n, addr)
	}
	return float64(after.runtime-before.runtime) / float64(runs), nil
}

// scaleMarkdown is the scale step's section of the results.
func scaleMarkdown(r *scaleResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Scale\n\n")
	fmt.Fprintf(&b, "Kernel memory (memlock from fdinfo, every map and every table) and BPF time per run (BPF stats, %d connections each):\n\n", r.Conns)
	b.WriteString("| state | maps' memory | of it: tables | lists | endpoint_counts | sk_lookup ns/run | connect4 ns/run |\n|---|---|---|---|---|---|---|\n")
	names := map[string]string{
		"one":        "2 measured services of 10 endpoints",
		"filler":     fmt.Sprintf("+ %d services of 10 endpoints (%d endpoints)", r.Services, r.Endpoints),
		"big subset": fmt.Sprintf("2 measured services of %d endpoints", r.BigSubset),
	}
	for _, st := range r.States {
		fmt.Fprintf(&b, "| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.0f | %.0f |\n", names[st.Name], mib(st.Memlock),
			mib(st.ByMap[bpf.TcpshiftMapTables]), mib(st.ByMap[bpf.TcpshiftMapLists]), mib(st.ByMap[bpf.TcpshiftMapEndpointCounts]), st.LookupNs, st.Connect4s)
	}
	if n := len(r.States); n > 0 {
		last := r.States[n-1]
		names := slices.Collect(maps.Keys(last.ByMap))
		slices.SortFunc(names, func(a, b string) int { return cmp.Compare(last.ByMap[b], last.ByMap[a]) })
		b.WriteString("\nPer map, in the last state:")
		for _, name := range names {
			fmt.Fprintf(&b, " %s %.2f MiB;", name, mib(last.ByMap[name]))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nFirst apply of %d services (%d endpoints): %v. One service's weight change among them: %v.\n",
		r.Services, r.Endpoints, r.FirstApply.Round(time.Millisecond), r.WeightChange.Round(time.Millisecond))
	return b.String()
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

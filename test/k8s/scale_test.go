//go:build k8s && k8sbench

package k8s

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/internal/bpfmem"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/test/k8s/cluster"
	"github.com/tcpshift/tcpshift/test/k8s/nodes"
	"github.com/tcpshift/tcpshift/test/k8s/repo"
)

// Endpoints of the measured Services live in 10.200.0.0/14: the node routes
// them (so the loader takes them), the client pod refuses them at once (an
// unreachable route), so a connect() runs the hooks and costs nothing else.
var endpointBase = netip.MustParseAddr("10.200.0.0")

func nthAddr(base netip.Addr, n int) string {
	b := base.As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b).String()
}

// scaleService creates a Service with a cluster IP and an EndpointSlice of
// its endpoints (IPs first.. first+n-1 of the endpoint range, port 8080).
func scaleService(ctx context.Context, c *cluster.Cluster, name, ip string, first, n int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := c.Clientset.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	port, portName, tcp := int32(8080), "http", corev1.ProtocolTCP
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
	}
	var eps []cluster.Endpoint
	for j := range n {
		eps = append(eps, cluster.Endpoint{IP: nthAddr(endpointBase, first+j), Ready: true})
	}
	sl.Endpoints = cluster.SliceEndpoints("default", eps...)
	if _, err := c.Clientset.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("EndpointSlice of %s: %w", name, err)
	}
	return nil
}

// procStatus reads a process's VmRSS and VmHWM (bytes).
func procStatus(pid int) (rss, hwm uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// cpuTime is a process's user and system time.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

// TestScale measures the agent at cluster scale against the real API server
// (make k8s-bench): 10 000 Services of 10 endpoints and one Service of 1000,
// the agent's memory, the maps' memory, first-sync time, per-event cost and
// connect4's run time per selection against the same with two Services.
func TestScale(t *testing.T) {
	const services, perService, big = 10000, 10, 1000
	ctx := context.Background()
	c := cluster.Start(t)
	tcpshift, err := repo.Bin("tcpshift")
	if err != nil {
		t.Fatal(err)
	}
	n := nodes.NewNode(t, "node1", 1)
	c.AddNode(t, n.Name, []string{n.PodCIDR.String()}, n.IP.String())
	client := n.NewPod("client")
	endpoints := netip.PrefixFrom(endpointBase, 14)
	if err := client.Do(func() error {
		_, dst, _ := net.ParseCIDR(endpoints.String())
		return netlink.RouteAdd(&netlink.Route{Dst: dst, Type: unix.RTN_UNREACHABLE})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(tcpshift, append(n.Flags(), "down", "--force")...).CombinedOutput(); err != nil {
			t.Errorf("tcpshift down: %v\n%s", err, out)
		}
	})
	tg, err := loader.Open(n.Netns, n.BPFFS, n.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()

	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()

	var out strings.Builder
	fmt.Fprintf(&out, "| measure | value |\n|---|---|\n")
	row := func(k, v string) {
		fmt.Fprintf(&out, "| %s | %s |\n", k, v)
		t.Logf("%s: %s", k, v)
	}

	// Two Services: "one" of 10 endpoints and "big" of 1000.
	if err := scaleService(ctx, c, "one", "10.96.0.10", 0, perService); err != nil {
		t.Fatal(err)
	}
	if err := scaleService(ctx, c, "big", "10.96.0.11", 200000, big); err != nil {
		t.Fatal(err)
	}
	agent := startScaleAgent(t, tcpshift, n, c)
	perSelection := func(ip string) float64 {
		pin := filepath.Join(tg.Dir, bpf.TcpshiftProgTcpshiftConnect4+"_link")
		id0, rt0, runs0, err := bpfmem.ProgStats(pin)
		if err != nil {
			t.Fatal(err)
		}
		ok, failed, err := client.Connect(ip+":80", 2000)
		if err != nil || ok != 0 || failed != 2000 {
			t.Fatalf("connects to %s: %d ok, %d failed, %v (want all 2000 refused by the pod's unreachable route after the rewrite)", ip, ok, failed, err)
		}
		id1, rt1, runs1, err := bpfmem.ProgStats(pin)
		if err != nil {
			t.Fatal(err)
		}
		if id1 != id0 || runs1 == runs0 {
			t.Fatalf("connect4 %d → %d, %d runs: replaced or not run while measured", id0, id1, runs1-runs0)
		}
		return float64(rt1-rt0) / float64(runs1-runs0)
	}
	waitServices(t, tg, 3) // one, big and the API server's own
	small := []float64{perSelection("10.96.0.10"), perSelection("10.96.0.11")}
	mem2, _, err := bpfmem.MapMemory(tg.Dir)
	if err != nil {
		t.Fatal(err)
	}

	// 10 000 more Services.
	start := time.Now()
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ip := fmt.Sprintf("10.96.%d.%d", 100+i/250, 1+i%250)
				if err := scaleService(ctx, c, fmt.Sprintf("svc-%05d", i), ip, i*perService, perService); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range services {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	waitServices(t, tg, services+3)
	caughtUp := time.Since(start)
	row("Services created in the API server (16 clients)", fmt.Sprintf("%d in %s", services, created.Round(time.Millisecond)))
	row("agent in force with all of them, from the first create", caughtUp.Round(time.Millisecond).String())

	// First sync at scale: a new agent over the pinned state.
	agent.Stop()
	start = time.Now()
	agent = startScaleAgent(t, tcpshift, n, c)
	row(fmt.Sprintf("first sync of a new agent, %d Services (start to ready)", services+3), time.Since(start).Round(time.Millisecond).String())
	pid := agent.Cmd.Process.Pid
	rss, hwm := procStatus(pid)
	row("agent memory after the first sync (RSS / peak RSS)", fmt.Sprintf("%.1f MiB / %.1f MiB", mib(rss), mib(hwm)))
	agentProfile(t, "heap", "agent-heap-first-sync.pb.gz")
	memBig, byMap, err := bpfmem.MapMemory(tg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	row("maps' memory with 2 Services (memlock, inner tables included)", fmt.Sprintf("%.1f MiB", mib(mem2)))
	row(fmt.Sprintf("maps' memory with %d Services", services+3), fmt.Sprintf("%.1f MiB (tables %.1f MiB)", mib(memBig), mib(byMap["tables"])))

	// Per-event cost: the endpoints of one Service replaced, 100 times,
	// each change seen in force through the maps (a status would read all
	// ten thousand services at every poll, on the agent's CPUs).
	const changes = 100
	probe := newProbe(t, tg.Dir, netip.MustParseAddrPort("10.96.100.43:80")) // svc-00042
	defer probe.close()
	cpu0 := cpuTime(pid)
	profiled := make(chan struct{})
	go func() {
		defer close(profiled)
		agentProfile(t, "profile?seconds=15", "agent-cpu-changes.pb.gz")
	}()
	defer func() { <-profiled }()
	var lat []time.Duration
	for k := range changes {
		first := 300000 + k*perService
		start := time.Now()
		var eps []cluster.Endpoint
		for j := range perService {
			eps = append(eps, cluster.Endpoint{IP: nthAddr(endpointBase, first+j), Ready: true})
		}
		c.SetEndpoints(t, "default", "svc-00042-1", eps...)
		want := nthAddr(endpointBase, first) + ":8080"
		for !probe.has(want) {
			if time.Since(start) > 60*time.Second {
				t.Fatalf("endpoint %s not in force after 60 s", want)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	cpu := (cpuTime(pid) - cpu0) / changes
	if !hasEndpoint(t, tg, "svc-00042.default-80", nthAddr(endpointBase, 300000+(changes-1)*perService)+":8080") {
		t.Fatal("status does not show the last change's endpoint")
	}
	slices.Sort(lat)
	row(fmt.Sprintf("one EndpointSlice change, to the table in force (of %d: median / p99 / max)", changes), fmt.Sprintf("%s / %s / %s",
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond)))
	row(fmt.Sprintf("agent CPU per such change (user+system, mean of %d)", changes), cpu.Round(100*time.Microsecond).String())
	rss, hwm = procStatus(pid)
	row("agent memory after the changes (RSS / peak RSS)", fmt.Sprintf("%.1f MiB / %.1f MiB", mib(rss), mib(hwm)))

	scaled := []float64{perSelection("10.96.0.10"), perSelection("10.96.0.11")}
	row("connect4 ns per selection, 10 endpoints: 2 Services / 10 003", fmt.Sprintf("%.0f / %.0f", small[0], scaled[0]))
	row("connect4 ns per selection, 1000 endpoints: 2 Services / 10 003", fmt.Sprintf("%.0f / %.0f", small[1], scaled[1]))

	if p := os.Getenv("TCPSHIFT_K8S_BENCH_OUT"); p != "" {
		doc := "# tcpshift agent at cluster scale\n\nWritten by `make k8s-bench` (test/k8s/scale_test.go): a real kube-apiserver and etcd on this\n" +
			"machine, one simulated node, one agent. Each connect from a pod to a ClusterIP is rewritten by\n" +
			"connect4 and then refused by the pod's unreachable route, so the hook's cost is all it pays.\n\n" +
			out.String()
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// probe reads one frontend's table in force straight from the maps: a
// dozen lookups, where a status of one service reads every service.
type probe struct {
	set   *maps.Set
	front netip.AddrPort
}

func newProbe(t *testing.T, dir string, front netip.AddrPort) *probe {
	set, err := maps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &probe{set: set, front: front}
}

func (p *probe) close() { p.set.Close() }

// has reports whether the frontend's table in force holds addr. A table
// swapped out while it is read (its inner map gone) reads as not yet.
func (p *probe) has(addr string) bool {
	var fe bpf.TcpshiftFrontend
	if err := p.set.Frontends.Lookup(maps.FrontendKey(p.front), &fe); err != nil {
		return false
	}
	tbl, err := p.set.Table(fe.Service)
	if err != nil {
		return false
	}
	for _, ids := range tbl.Endpoints {
		for _, id := range ids {
			if ep, _, err := p.set.Endpoint(id); err == nil && ep.String() == addr {
				return true
			}
		}
	}
	return false
}

func startScaleAgent(t *testing.T, tcpshift string, n *nodes.Node, c *cluster.Cluster) *nodes.Process {
	health := "127.0.0.1:19880"
	argv := append([]string{tcpshift}, n.Flags()...)
	pr := nodes.Start(t, append(argv, "agent", "--node", n.Name, "--kubeconfig", c.Kubeconfig, "--health-addr", health)...)
	waitReady(t, pr, health, 10*time.Minute)
	return pr
}

func waitServices(t *testing.T, tg *loader.Target, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := tg.Status("")
		if err == nil && len(st.Services) >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("services in force: want %d (%v)", want, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func hasEndpoint(t *testing.T, tg *loader.Target, service, addr string) bool {
	st, err := tg.Status(service)
	if err != nil || len(st.Services) == 0 {
		return false
	}
	for _, sub := range st.Services[0].Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Address == addr {
				return true
			}
		}
	}
	return false
}

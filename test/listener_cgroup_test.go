package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// Lookup mode with --cgroup: the cgroup scopes connect mode's hooks, never
// which backends lookup mode serves. Every backend here runs in the test's
// namespace but outside the env's cgroup (the test process never joins it),
// and no daemon runs: the kernel alone must register a listener that a
// backend re-creates.

// outsideCgroup fails the test unless pid is outside env's cgroup.
func outsideCgroup(t *testing.T, env *testenv.Env, pid int) {
	t.Helper()
	root, err := loader.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, env.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if cg, ok := strings.CutPrefix(line, "0::"); ok {
			if cg == "/"+rel || strings.HasPrefix(cg, "/"+rel+"/") {
				t.Fatalf("process %d is in the cgroup tcpshift was applied with (%s): the test needs it outside", pid, cg)
			}
			return
		}
	}
	t.Fatalf("process %d: no cgroup v2 line in %q", pid, b)
}

// endpointCounts reads a service's endpoint counters from the maps, by
// address, and its service counters.
func endpointCounts(t *testing.T, tg *loader.Target, name string) (map[string]bpf.TcpshiftEndpointStats, bpf.TcpshiftServiceStats) {
	t.Helper()
	eps := map[string]bpf.TcpshiftEndpointStats{}
	var svcStats bpf.TcpshiftServiceStats
	err := tg.Read(func(set *maps.Set) error {
		svcs, err := set.ServiceList()
		if err != nil {
			return err
		}
		for _, svc := range svcs {
			if svc.Name != name {
				continue
			}
			if svcStats, err = set.ServiceStats(svc.ID); err != nil {
				return err
			}
			for _, sub := range svc.Subsets {
				for _, ep := range sub.Endpoints {
					st, err := set.EndpointStats(ep.ID)
					if err != nil {
						return err
					}
					eps[ep.Addr.String()] = st
				}
			}
			return nil
		}
		return fmt.Errorf("no service %s", name)
	})
	if err != nil {
		t.Fatal(err)
	}
	return eps, svcStats
}

// iperfBackend is a persistent `iperf3 -s` whose log is flushed line by line.
type iperfBackend struct {
	addr string
	log  string
	pid  int
}

func startIperfBackend(t *testing.T, env *testenv.Env, addr string, port int) *iperfBackend {
	t.Helper()
	b := &iperfBackend{addr: fmt.Sprintf("%s:%d", addr, port), log: filepath.Join(t.TempDir(), "iperf3.log")}
	cmd := exec.Command(iperf3(t), "-s", "-B", addr, "-p", fmt.Sprint(port), "--forceflush", "--logfile", b.log)
	if err := env.NS.Do(cmd.Start); err != nil {
		t.Fatalf("start iperf3 server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	b.pid = cmd.Process.Pid
	b.waitListening(t, 1)
	return b
}

func (b *iperfBackend) lines(t *testing.T, s string) int {
	t.Helper()
	text, err := os.ReadFile(b.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Count(string(text), s)
}

// tests is how many client tests the server accepted.
func (b *iperfBackend) tests(t *testing.T) int {
	return b.lines(t, "Accepted connection from")
}

// waitListening waits for the server's n-th listener: iperf3 opens a new
// one for every test, after the last one ended, and says so once it
// listens. Waiting for it leaves out the instant between two listeners,
// when no registration can help.
func (b *iperfBackend) waitListening(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf("(test #%d)", n)
	for deadline := time.Now().Add(5 * time.Second); b.lines(t, want) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			text, _ := os.ReadFile(b.log)
			t.Fatalf("iperf3 server %s: no listener for test %d after 5s:\n%s", b.addr, n, text)
		}
	}
}

// iperfClient runs one short iperf3 test from src and fails the test unless
// it completes.
func iperfClient(t *testing.T, env *testenv.Env, src, frontend string) {
	t.Helper()
	host, port, _ := strings.Cut(frontend, ":")
	cmd := exec.Command(iperf3(t), "-c", host, "-p", port, "-B", src, "-t", "1", "-J", "--connect-timeout", "3000")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := env.NS.Do(cmd.Start); err != nil {
		t.Fatalf("start iperf3 client: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("iperf3 client from %s hung (control and data connections on different servers?):\n%s", src, out.String())
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes uint64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal([]byte(out.String()), &res); err != nil || jerr != nil || res.Error != "" || res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 client from %s: %v, %v, error %q:\n%s", src, err, jerr, res.Error, out.String())
	}
}

// Issue 25 item 5: two persistent iperf3 servers outside the cgroup, client
// affinity on, five runs of one client back to back: every run completes,
// on the endpoint the first run got. Before, sockops watched only the
// cgroup, so the listener each server opens after a test was never
// registered: the second run was refused or went to the other server, the
// next ones were refused.
func TestLookupCgroupIperf3BackendsOutsideCgroup(t *testing.T) {
	env := testenv.New(t)
	v1 := startIperfBackend(t, env, "127.0.0.1", 5201)
	v2 := startIperfBackend(t, env, "127.0.0.1", 5202)
	outsideCgroup(t, env, os.Getpid())
	outsideCgroup(t, env, v1.pid)
	outsideCgroup(t, env, v2.pid)
	tg := env.Target()
	if tg.Cgroup != env.Cgroup {
		t.Fatalf("target cgroup %s, want the env's %s", tg.Cgroup, env.Cgroup)
	}
	apply(t, tg, "services:\n- name: tcp-echo\n  listen: 127.0.0.100:5200\n  mode: lookup\n"+fmt.Sprintf(iperfRoute, "127.0.0.1", "127.0.0.1"))

	// 3:1: the table's first position is v1's, so the client sticks to v1.
	for run := 1; run <= 5; run++ {
		iperfClient(t, env, "127.0.0.10", "127.0.0.100:5200")
		if got1, got2 := v1.tests(t), v2.tests(t); got1 != run || got2 != 0 {
			t.Fatalf("run %d: v1 has served %d runs, v2 %d; want %d and 0 (affinity to v1)", run, got1, got2, run)
		}
		v1.waitListening(t, run+1)
	}
	eps, svc := endpointCounts(t, tg, "tcp-echo")
	a, b := eps["127.0.0.1:5201"], eps["127.0.0.1:5202"]
	// Two connections a run (control and data); each new listener of v1
	// registered by the kernel as it listened (the first by apply).
	if a.Connections != 10 || b.Connections != 0 || a.Registered != 5 || a.RegisterFailed != 0 {
		t.Fatalf("v1 %d connections %d registered (%d failed), v2 %d connections; want 10, 5 (0), 0",
			a.Connections, a.Registered, a.RegisterFailed, b.Connections)
	}
	if svc.Refused != 0 || svc.NoSocket != 0 || a.Repicked != 0 {
		t.Fatalf("refused %d, no socket %d, repicked %d; want 0 each", svc.Refused, svc.NoSocket, a.Repicked)
	}
}

// A backend outside the cgroup closes its listener and opens a new one on
// the same address: the very next connection reaches it, with no daemon.
func TestLookupCgroupListenerReregisteredOutsideCgroup(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	two := env.Echo("127.0.0.1:9002", "two")
	outsideCgroup(t, env, os.Getpid())
	tg := env.Target()
	apply(t, tg, weighted(0, 100))
	wantSplit(t, env, 3, map[string]int{"two": 3})

	for restart := 1; restart <= 3; restart++ {
		two.Close()
		if _, err := env.Ask(frontend); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("restart %d: with v2's listener closed: %v, want refused", restart, err)
		}
		two = env.Echo("127.0.0.1:9002", "two")
		if who, err := env.Ask(frontend); err != nil || who != "two" {
			t.Fatalf("restart %d: the first connection after v2 listens again: %q, %v; want two", restart, who, err)
		}
	}
	eps, svc := endpointCounts(t, tg, "tcp-echo")
	if st := eps["127.0.0.1:9002"]; st.Registered != 3 || st.RegisterFailed != 0 || st.Connections != 6 {
		t.Fatalf("v2: %d listeners registered (%d failed), %d connections; want 3 (0), 6", st.Registered, st.RegisterFailed, st.Connections)
	}
	if svc.Refused != 3 || svc.NoSocket != 3 {
		t.Fatalf("refused %d, no socket %d; want 3 each (while v2 had no listener)", svc.Refused, svc.NoSocket)
	}
}

// askFrom opens a connection from src (a client address of its own, for
// affinity by client) to addr and returns the name of the backend.
func askFrom(env *testenv.Env, src, addr string) (string, error) {
	var c net.Conn
	err := env.NS.Do(func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	return testenv.AskOn(c)
}

const affinityEcho = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  policy: roundrobin
  affinity: {key: client, ttl: 60s}
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 1}
`

// A client whose affinity names an endpoint with no listener is chosen for
// again (here its turn falls on that same subset, so the draw goes among
// the subsets that have a listener), its affinity follows, and the repick
// is counted once. When the listener is back, the moved client stays
// where it is now and new clients follow the weights again. With SYN
// cookies every handshake's last ACK runs sk_lookup again: it reaches the
// endpoint its SYN was given and nothing is counted twice.
func TestLookupAffinityRepicksDeadListener(t *testing.T) {
	t.Run("request sockets", func(t *testing.T) { testRepick(t, false) })
	t.Run("syn cookies", func(t *testing.T) { testRepick(t, true) })
}

func testRepick(t *testing.T, cookies bool) {
	env := testenv.New(t)
	if cookies {
		sysctl(t, env, "ipv4.tcp_syncookies", "2") // always send cookies
	}
	before := tcpExt(t, env, "SyncookiesRecv")
	one := env.Echo("127.0.0.1:9001", "one")
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, affinityEcho)

	ask := func(src, want string) {
		t.Helper()
		who, err := askFrom(env, src, frontend)
		if err != nil || who != want {
			t.Fatalf("client %s: %q, %v; want %s", src, who, err, want)
		}
	}
	// 1:1 round-robin: positions alternate v1, v2.
	ask("127.0.0.11", "one") // position 0; x sticks to v1
	ask("127.0.0.12", "two") // position 1
	one.Close()
	// x's v1 has no listener: chosen for again, at position 2, v1's
	// again, which has none either, so it goes to v2, the subset that
	// has one. Before, it was refused.
	ask("127.0.0.11", "two")
	ask("127.0.0.11", "two") // its affinity now names v2
	r := repickedOf(t, tg)
	v1 := netip.MustParseAddrPort("127.0.0.1:9001")
	if r.Total != 1 || r.Endpoints[v1] != 1 || len(r.Endpoints) != 1 {
		t.Fatalf("repicked %+v; want 1, on v1", r)
	}
	if st := status(t, tg); st.AffinityRepicked != 1 || st.Subsets[0].Endpoints[0].Repicked != 1 || st.Subsets[1].Endpoints[0].Repicked != 0 {
		t.Fatalf("status: affinity_repicked %d, v1 %d, v2 %d; want 1, 1, 0", st.AffinityRepicked, st.Subsets[0].Endpoints[0].Repicked, st.Subsets[1].Endpoints[0].Repicked)
	}

	env.Echo("127.0.0.1:9001", "one")
	ask("127.0.0.11", "two") // an affinity made earlier stays
	// New clients follow the weights from position 3 on.
	for i, want := range []string{"two", "one", "two", "one"} {
		ask(fmt.Sprintf("127.0.0.%d", 21+i), want)
	}
	// And so do they when they come back.
	for i, want := range []string{"two", "one", "two", "one"} {
		ask(fmt.Sprintf("127.0.0.%d", 21+i), want)
	}
	eps, svc := endpointCounts(t, tg, "tcp-echo")
	a, b := eps["127.0.0.1:9001"], eps["127.0.0.1:9002"]
	if a.Connections != 5 || b.Connections != 8 || a.Repicked != 1 || b.Repicked != 0 {
		t.Fatalf("v1 %d connections %d repicked, v2 %d connections %d repicked; want 5 1, 8 0", a.Connections, a.Repicked, b.Connections, b.Repicked)
	}
	if svc.Refused != 0 || svc.NoSocket != 0 {
		t.Fatalf("refused %d, no socket %d; want 0", svc.Refused, svc.NoSocket)
	}
	if recv := tcpExt(t, env, "SyncookiesRecv") - before; cookies && recv < 13 {
		t.Fatalf("the listeners took %d SYN cookies back, want at least 13: the test did not use cookies", recv)
	}
}

// rootSockops lists the programs attached to the cgroup v2 root for
// sockops (this kernel reports no link ids for cgroups).
func rootSockops(t *testing.T) map[ebpf.ProgramID]bool {
	t.Helper()
	root, err := loader.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		t.Fatal(err)
	}
	out := map[ebpf.ProgramID]bool{}
	for _, p := range res.Programs {
		out[p.ID] = true
	}
	return out
}

// sockopsLink reads the pinned sockops link of tg's state.
func sockopsLink(t *testing.T, tg *loader.Target) *link.Info {
	t.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(tg.Dir, bpf.TcpshiftProgTcpshiftSockops+"_link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// inode returns a cgroup directory's inode, its id.
func inode(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// sockops is attached to the cgroup root, once, whatever --cgroup says;
// state whose sockops a build before attached to --cgroup is moved there by
// the next apply that loads programs, and down leaves nothing at the root.
func TestSockopsAtCgroupRoot(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	two := env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, echoConfig)
	root, err := loader.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	info := sockopsLink(t, tg)
	if cg := info.Cgroup(); cg == nil || cg.CgroupId != inode(t, root) {
		t.Fatalf("sockops link on cgroup %+v, want the root's (%d)", cg, inode(t, root))
	}
	if n := testenv.CgroupPrograms(t, env.Cgroup, ebpf.AttachCGroupSockOps); n != 0 {
		t.Fatalf("%d sockops programs on --cgroup, want 0", n)
	}
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d connect and getpeername programs on --cgroup, want 4", n)
	}
	if !rootSockops(t)[info.Program] {
		t.Fatalf("the root's sockops programs %v lack ours (%d)", rootSockops(t), info.Program)
	}

	// The state as a build before left it: sockops on --cgroup, and
	// programs of another build (a tag the owner record does not match).
	pin := filepath.Join(tg.Dir, bpf.TcpshiftProgTcpshiftSockops+"_link")
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	old, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Detach(); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	moved, err := link.AttachCgroup(link.CgroupOptions{Path: env.Cgroup, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	if err := moved.Pin(pin); err != nil {
		t.Fatal(err)
	}
	movedInfo, err := moved.Info()
	if err != nil {
		t.Fatal(err)
	}
	moved.Close()
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	o, err := set.Owner()
	if err != nil {
		t.Fatal(err)
	}
	o.ProgTag = 0
	if err := set.Owners.Put(uint32(0), &o); err != nil {
		t.Fatal(err)
	}
	set.Close()
	if n := testenv.CgroupPrograms(t, env.Cgroup, ebpf.AttachCGroupSockOps); n != 1 {
		t.Fatalf("%d sockops programs on --cgroup after putting it there, want 1", n)
	}

	if _, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	info = sockopsLink(t, tg)
	if cg := info.Cgroup(); cg == nil || cg.CgroupId != inode(t, root) {
		t.Fatalf("after apply: sockops link on cgroup %+v, want the root's", cg)
	}
	if n := testenv.CgroupPrograms(t, env.Cgroup, ebpf.AttachCGroupSockOps); n != 0 {
		t.Fatalf("after apply: %d sockops programs on --cgroup, want 0", n)
	}
	progs := rootSockops(t)
	if !progs[info.Program] || progs[movedInfo.Program] {
		t.Fatalf("after apply: the root's sockops programs %v; want ours (%d), not the old one (%d)", progs, info.Program, movedInfo.Program)
	}
	if info.Program == movedInfo.Program || info.ID == movedInfo.ID {
		t.Fatalf("after apply: link %d program %d, the old ones: not reloaded", info.ID, info.Program)
	}
	if _, err := os.Stat(pin + "_moving"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pin left aside: %v", err)
	}
	// It works: the split, and a listener re-created outside the cgroup
	// is registered.
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	two.Close()
	env.Echo("127.0.0.1:9002", "two")
	wantSplit(t, env, 10, map[string]int{"one": 8, "two": 2})
	if eps, _ := endpointCounts(t, tg, "tcp-echo"); eps["127.0.0.1:9002"].Registered != 1 {
		t.Fatalf("v2's new listener registered %d times, want 1", eps["127.0.0.1:9002"].Registered)
	}

	if removed, err := tg.Down(); err != nil || !removed {
		t.Fatalf("down: %v, %v", removed, err)
	}
	if rootSockops(t)[info.Program] {
		t.Fatalf("after down: program %d still attached to the root", info.Program)
	}
	if n := testenv.CgroupPrograms(t, env.Cgroup, ebpf.AttachCGroupSockOps); n != 0 {
		t.Fatalf("after down: %d sockops programs on --cgroup", n)
	}
}

// The repick never turns a client away while some subset has a listener,
// whichever subset its turn falls on: with two of three subsets' listeners
// gone, every client pinned to them goes to the third.
func TestLookupAffinityRepickSkipsDeadSubsets(t *testing.T) {
	env := testenv.New(t)
	one := env.Echo("127.0.0.1:9001", "one")
	two := env.Echo("127.0.0.1:9002", "two")
	env.Echo("127.0.0.1:9003", "three")
	tg := env.Target()
	apply(t, tg, strings.NewReplacer(
		"    v2: {endpoints: [127.0.0.1:9002]}\n", "    v2: {endpoints: [127.0.0.1:9002]}\n    v3: {endpoints: [127.0.0.1:9003]}\n",
		"  - {subset: v2, weight: 1}\n", "  - {subset: v2, weight: 1}\n  - {subset: v3, weight: 1}\n").Replace(affinityEcho))
	ask := func(src, want string) {
		t.Helper()
		if who, err := askFrom(env, src, frontend); err != nil || who != want {
			t.Fatalf("client %s: %q, %v; want %s", src, who, err, want)
		}
	}
	// 1:1:1 round-robin: positions go v1, v2, v3.
	for i, want := range []string{"one", "two", "three", "one"} {
		ask(fmt.Sprintf("127.0.0.%d", 31+i), want)
	}
	one.Close()
	two.Close()
	// Positions 4, 5, 6 (v2, v3, v1): the clients of v1 and v2 all end on v3.
	for _, src := range []string{"127.0.0.31", "127.0.0.34", "127.0.0.32", "127.0.0.31", "127.0.0.32"} {
		ask(src, "three")
	}
	r := repickedOf(t, tg)
	v1, v2 := netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("127.0.0.1:9002")
	if r.Total != 3 || r.Endpoints[v1] != 2 || r.Endpoints[v2] != 1 {
		t.Fatalf("repicked %+v; want 3: 2 off v1, 1 off v2", r)
	}
	if _, svc := endpointCounts(t, tg, "tcp-echo"); svc.Refused != 0 || svc.NoSocket != 0 {
		t.Fatalf("refused %d, no socket %d; want 0", svc.Refused, svc.NoSocket)
	}
}

// repicked is a service's affinity repicks as status shows them: the sum,
// and the endpoints with a count above 0.
type repicked struct {
	Total     uint64
	Endpoints map[netip.AddrPort]uint64
}

func repickedOf(t *testing.T, tg *loader.Target) repicked {
	t.Helper()
	s := status(t, tg)
	r := repicked{Total: s.AffinityRepicked, Endpoints: map[netip.AddrPort]uint64{}}
	for _, sub := range s.Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Repicked > 0 {
				r.Endpoints[netip.MustParseAddrPort(ep.Address)] += ep.Repicked
			}
		}
	}
	return r
}

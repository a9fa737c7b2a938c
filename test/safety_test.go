package test

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// wantErr fails unless err is one line holding every one of subs.
func wantErr(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one containing %q", what, subs)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: error spans lines:\n%s", what, msg)
	}
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Fatalf("%s: error %q does not contain %q", what, msg, s)
		}
	}
}

// wantRefused fails unless a connection to addr is refused at once.
func wantRefused(t *testing.T, env *testenv.Env, addr string) {
	t.Helper()
	c, err := env.Dial(addr)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection, want it refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

// frontendEntries reads the frontends map as the data path sees it.
func frontendEntries(t *testing.T, tg *loader.Target) map[netip.AddrPort]bpf.TcpshiftFrontend {
	t.Helper()
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	out := map[netip.AddrPort]bpf.TcpshiftFrontend{}
	var (
		key bpf.TcpshiftFrontendKey
		val bpf.TcpshiftFrontend
	)
	it := set.Frontends.Iterate()
	for it.Next(&key, &val) {
		var b [16]byte
		for i, w := range key.Addr {
			binary.NativeEndian.PutUint32(b[4*i:], w)
		}
		out[netip.AddrPortFrom(netip.AddrFrom16(b).Unmap(), key.Port)] = val
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate frontends: %v", err)
	}
	return out
}

// serviceID reads the id the kernel holds for a service.
func serviceID(t *testing.T, tg *loader.Target, name string) uint32 {
	t.Helper()
	var id uint32
	err := tg.Read(func(set *tsmaps.Set) error {
		svc, ok, err := set.Service(name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no service %s", name)
		}
		id = svc.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func changeList(changes []loader.Change) string {
	var s []string
	for _, c := range changes {
		s = append(s, c.Service+" "+c.Action)
	}
	return strings.Join(s, ", ")
}

// lockPinDir takes the namespace's writer lock as another writer would:
// an exclusive flock on its own open of the pin directory.
func lockPinDir(t *testing.T, dir string) (release func()) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			unix.Flock(fd, unix.LOCK_UN)
			unix.Close(fd)
		})
	}
	t.Cleanup(release)
	return release
}

const (
	concurrentA = `services:
- name: a
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`
	concurrentB = `services:
- name: b
  listen: 127.0.0.101:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 1}
`
)

// Two writers applying different files at once, each through its own
// Target, both succeed and the namespace ends up holding exactly one of
// the files, never a mix, also when both create the state from nothing.
func TestConcurrentAppliesNeverMix(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tgA, tgB := env.Target(), env.Target()
	t.Cleanup(func() { tgA.Down() })
	type side struct {
		tg               *loader.Target
		cfg              *config.Config
		name, front, who string
	}
	a := side{tgA, parse(t, concurrentA), "a", "127.0.0.100:9000", "one"}
	b := side{tgB, parse(t, concurrentB), "b", "127.0.0.101:9000", "two"}

	prev := "" // the service in force before the round
	wins := map[string]int{}
	for round := range 50 {
		if round < 10 {
			if _, err := tgA.Down(); err != nil {
				t.Fatalf("round %d: down: %v", round, err)
			}
			if _, err := os.Stat(tgA.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("round %d: pin directory after down: %v", round, err)
			}
			prev = ""
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			changes [2][]loader.Change
			errs    [2]error
		)
		for i, s := range []side{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				changes[i], errs[i] = s.tg.Apply(loader.Fixed(s.cfg), loader.ApplyOptions{})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: apply %s: %v", round, []string{"a", "b"}[i], err)
			}
		}

		st, err := tgA.Status("")
		if err != nil {
			t.Fatalf("round %d: status: %v", round, err)
		}
		if len(st.Services) != 1 {
			t.Fatalf("round %d: %d services in force, want exactly one", round, len(st.Services))
		}
		winner, loser, wi, li := a, b, 0, 1
		if st.Services[0].Name == "b" {
			winner, loser, wi, li = b, a, 1, 0
		} else if st.Services[0].Name != "a" {
			t.Fatalf("round %d: service %q in force", round, st.Services[0].Name)
		}
		wins[winner.name]++
		if s := st.Services[0]; s.Listen != winner.front || len(s.Subsets) != 1 || len(s.Subsets[0].Endpoints) != 1 {
			t.Fatalf("round %d: status %+v, want exactly file %s", round, s, winner.name)
		}

		// The writer that went last saw the other's service and removed
		// it; the first saw the state the round started from.
		wantWinner := winner.name + " added, " + loser.name + " removed"
		wantLoser := loser.name + " added"
		switch prev {
		case loser.name:
			wantLoser = loser.name + " unchanged"
		case winner.name:
			wantLoser += ", " + winner.name + " removed"
		}
		if got := changeList(changes[wi]); got != wantWinner {
			t.Fatalf("round %d (from %q): last apply (%s) changed %q, want %q", round, prev, winner.name, got, wantWinner)
		}
		if got := changeList(changes[li]); got != wantLoser {
			t.Fatalf("round %d (from %q): first apply (%s) changed %q, want %q", round, prev, loser.name, got, wantLoser)
		}

		fronts := frontendEntries(t, tgA)
		id := serviceID(t, tgA, winner.name)
		want := map[netip.AddrPort]bpf.TcpshiftFrontend{
			netip.MustParseAddrPort(winner.front): {Service: id, Mode: tsmaps.ModeLookup},
		}
		if !maps.Equal(fronts, want) {
			t.Fatalf("round %d: frontends map %v, want %v", round, fronts, want)
		}
		if who, err := env.Ask(winner.front); err != nil || who != winner.who {
			t.Fatalf("round %d: %s answered by %q (%v), want %q", round, winner.front, who, err, winner.who)
		}
		wantRefused(t, env, loser.front)
		prev = winner.name
	}
	t.Logf("last writer per round: %v", wins)
}

// Two writers changing different subsets of one service at once never lose
// either change, and the table in force always matches the stored weights.
func TestConcurrentSetWeightsNeverLose(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	env.Echo("127.0.0.1:9003", "three")
	tg1, tg2 := env.Target(), env.Target()
	apply(t, tg1, `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
    v3: {endpoints: [127.0.0.1:9003]}
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 1}
  - {subset: v3, weight: 1}
`)
	const rounds = 200
	var w1, w2 uint64
	for r := range rounds {
		w1, w2 = uint64(r%7+1), uint64(r%5+1)
		var (
			wg         sync.WaitGroup
			start      = make(chan struct{})
			err1, err2 error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, err1 = tg1.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: w1}})
		}()
		go func() {
			defer wg.Done()
			<-start
			_, err2 = tg2.SetWeights("tcp-echo", []loader.Weight{{Subset: "v2", Weight: w2}})
		}()
		close(start)
		wg.Wait()
		if err1 != nil || err2 != nil {
			t.Fatalf("round %d: set-weight v1: %v; v2: %v", r, err1, err2)
		}

		err := tg1.Read(func(set *tsmaps.Set) error {
			svc, ok, err := set.Service("tcp-echo")
			if err != nil || !ok {
				return fmt.Errorf("read service: %v (found %v)", err, ok)
			}
			if got, want := svc.Weights(), []uint64{w1, w2, 1}; !slices.Equal(got, want) {
				return fmt.Errorf("stored weights %v, want %v", got, want)
			}
			want, err := svc.Table()
			if err != nil {
				return err
			}
			have, err := set.Table(svc.ID)
			if err != nil {
				return err
			}
			if have.Len != want.Len || have.Seq != want.Seq || have.Policy != want.Policy {
				return fmt.Errorf("table in force has %d positions %v, the stored weights make %d positions %v",
					have.Len, have.Seq[:have.Len], want.Len, want.Seq[:want.Len])
			}
			for i := range have.Subsets {
				h, w := have.Subsets[i], want.Subsets[i]
				if h.Positions != w.Positions || h.Count != w.Count || !slices.Equal(have.Endpoints[i], want.Endpoints[i]) {
					return fmt.Errorf("table in force, subset %d: %d positions, endpoints %v; stored weights make %d positions, endpoints %v",
						i, h.Positions, have.Endpoints[i], w.Positions, want.Endpoints[i])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d (v1=%d v2=%d): %v", r, w1, w2, err)
		}
		s := status(t, tg1)
		got := []uint64{s.Subsets[0].Weight, s.Subsets[1].Weight, s.Subsets[2].Weight}
		if want := []uint64{w1, w2, 1}; !slices.Equal(got, want) {
			t.Fatalf("round %d: status weights %v, want %v", r, got, want)
		}
	}
	// The last table (v1=4 v2=5 v3=1) steers exactly by its weights.
	if got, want := env.Count(frontend, 20), map[string]int{"one": 2 * int(w1), "two": 2 * int(w2), "three": 2}; !maps.Equal(got, want) {
		t.Fatalf("20 connections after the last round: %v, want %v", got, want)
	}
}

// endpointsConfig makes services × subsets × endpoints connect-mode
// endpoints at 10.<net>.<service*16+subset>.<endpoint+1>:9000.
func endpointsConfig(network, services, subsets, endpoints int) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for s := range services {
		fmt.Fprintf(&b, "- name: s%d\n  listen: 10.96.0.%d:9000\n  mode: connect\n  subsets:\n", s, s+1)
		for j := range subsets {
			eps := make([]string, endpoints)
			for k := range eps {
				eps[k] = fmt.Sprintf("10.%d.%d.%d:%d", network, s*16+j, k%250+1, 9000+k/250)
			}
			fmt.Fprintf(&b, "    v%d: {endpoints: [%s]}\n", j, strings.Join(eps, ", "))
		}
	}
	return b.String()
}

// Every refusal is one line naming the field, and leaves the kernel
// exactly as it was.
func TestRefusalsLeaveKernelUnchanged(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		env := testenv.New(t)
		echoPair(env)
		env.Remote() // here 10.0.0.1/24
		h, err := netlink.NewHandleAt(env.NS.Handle)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.RouteAdd(&netlink.Route{Gw: net.ParseIP("10.0.0.2")}); err != nil {
			t.Fatalf("default route via 10.0.0.2: %v", err)
		}
		tg := env.Target()
		apply(t, tg, echoConfig)
		before := env.KernelState()

		// More than 131072 endpoints in all: 9 × 16 × 1024.
		_, err = config.Parse("routes.yaml", []byte(endpointsConfig(1, 9, 16, 1024)))
		wantErr(t, "147456 endpoints", err, "services[8].subsets.v0.endpoints[0]", "131072")

		for _, text := range []string{"", "services: []\n"} {
			_, err := config.Parse("routes.yaml", []byte(text))
			wantErr(t, fmt.Sprintf("file %q", text), err, "no services")
		}

		foreign := `services:
- name: dns
  listen: 8.8.8.8:53
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`
		_, err = tg.Apply(loader.Fixed(parse(t, foreign)), loader.ApplyOptions{})
		wantErr(t, "address routed to another host", err, "routes.yaml:", "services[0].listen", "8.8.8.8", "routed to another host", "via 10.0.0.2", "claim: true")
		if !errors.Is(err, loader.ErrForeignAddress) {
			t.Errorf("error %v is not ErrForeignAddress", err)
		}
		env.RequireUnchanged(before)

		_, err = tg.Apply(loader.Fixed(parse(t, `services:
- name: bcast
  listen: 10.0.0.255:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
`)), loader.ApplyOptions{})
		wantErr(t, "broadcast frontend", err, "services[0].listen", "10.0.0.255", "broadcast")
		env.RequireUnchanged(before)

		family := `services:
- name: fam
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: ["[fd00::2]:9001"]}
`
		cfg, err := config.Parse("routes.yaml", []byte(family))
		refuser := "config"
		if err == nil {
			refuser = "loader"
			_, err = tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
		}
		t.Logf("%s refuses: %v", refuser, err)
		wantErr(t, "IPv6 endpoint of an IPv4 connect-mode frontend", err, "services[0].subsets.v1.endpoints[0]", "IPv6", "[fd00::2]:9001")
		env.RequireUnchanged(before)

		// Claimed, the address is served here, and down gives it back.
		changes, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(foreign, "mode: lookup", "mode: lookup\n  claim: true", 1))), loader.ApplyOptions{})
		if err != nil {
			t.Fatalf("claimed foreign address: %v", err)
		}
		if got := changeList(changes); got != "dns added, tcp-echo removed" {
			t.Fatalf("claimed foreign address changed %q", got)
		}
		if !env.HasLocalRoute("8.8.8.8") {
			t.Fatal("no local route for the claimed 8.8.8.8")
		}
		if got := env.Count("8.8.8.8:53", 3); !maps.Equal(got, map[string]int{"one": 3}) {
			t.Fatalf("8.8.8.8:53 answered by %v, want one", got)
		}
		if removed, err := tg.Down(); err != nil || !removed {
			t.Fatalf("down: %v, %v", removed, err)
		}
		if env.HasLocalRoute("8.8.8.8") {
			t.Fatal("local route for 8.8.8.8 left after down")
		}
		routes, err := h.RouteGet(net.ParseIP("8.8.8.8"))
		if err != nil || len(routes) != 1 || !routes[0].Gw.Equal(net.ParseIP("10.0.0.2")) {
			t.Fatalf("route to 8.8.8.8 after down: %+v, %v; want via 10.0.0.2 again", routes, err)
		}
	})

	t.Run("endpoint ids", func(t *testing.T) {
		env := testenv.New(t)
		tg := env.Target()
		start := time.Now()
		apply(t, tg, endpointsConfig(1, 5, 16, 1024)) // 81920 endpoints
		t.Logf("applied 81920 endpoints in %v", time.Since(start).Round(time.Millisecond))
		before := env.KernelState()
		// The same services, every endpoint new: old and new ids would
		// coexist while the tables are swapped.
		_, err := tg.Apply(loader.Fixed(parse(t, endpointsConfig(2, 5, 16, 1024))), loader.ApplyOptions{})
		wantErr(t, "81920 endpoints replacing 81920 others", err, "at most 131072", "81920 endpoints in force")
		env.RequireUnchanged(before)
		if st, err := tg.Status(""); err != nil || len(st.Services) != 5 || st.Services[0].Subsets[0].Endpoints[0].Address != "10.1.0.1:9000" {
			t.Fatalf("state after the refused apply: %v", err)
		}
	})

	t.Run("cgroup", func(t *testing.T) {
		env := testenv.New(t)
		echoPair(env)
		empty := env.KernelState()
		bad, err := loader.Open(env.NS.Path(), env.BPFFS, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		_, err = bad.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{})
		wantErr(t, "apply with a --cgroup that is no cgroup", err, "--cgroup", "not a cgroup v2 directory")
		env.RequireUnchanged(empty)
		if _, err := os.Stat(filepath.Join(env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused first apply left %s: %v", filepath.Join(env.BPFFS, "tcpshift"), err)
		}

		// Refused over applied state, it changes nothing either.
		tg := env.Target()
		apply(t, tg, echoConfig)
		before := env.KernelState()
		_, err = bad.Apply(loader.Fixed(parse(t, strings.Replace(echoConfig, "weight: 80", "weight: 70", 1))), loader.ApplyOptions{})
		wantErr(t, "apply with a --cgroup that is no cgroup, over applied state", err, "not a cgroup v2 directory")
		env.RequireUnchanged(before)
	})

	t.Run("rollback", testRollbackMidway)
	t.Run("rollback from empty", testRollbackFromEmpty)
	t.Run("rollback route", testRollbackRoute)
}

// A first apply that fails midway removes everything, its pin directory too.
func testRollbackFromEmpty(t *testing.T) {
	env := testenv.New(t)
	env.Echo("127.0.0.1:9004", "four")
	doomed := env.Listen("127.0.0.1:9003")
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	empty := env.KernelState()
	cfg := parse(t, `services:
- name: fresh
  listen: 192.0.2.10:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9004]}
  route:
  - {subset: v1, weight: 1}
- name: doomed
  listen: 127.0.0.100:9100
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9003]}
  route:
  - {subset: v1, weight: 1}
`)
	// Hold the lock on the directory the apply will create.
	if err := os.MkdirAll(tg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	err := applyAfterShutdown(t, tg, env, doomed, cfg)
	wantErr(t, "first apply whose last socket closed before it was written", err, "doomed", "127.0.0.1:9003")
	env.RequireUnchanged(empty)
	if _, err := os.Stat(filepath.Join(env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed first apply left %s: %v", filepath.Join(env.BPFFS, "tcpshift"), err)
	}
}

// applyAfterShutdown applies cfg through a second Target while this test
// holds the writer lock, shuts the listener doomed down once the apply has
// planned (found every socket) and waits for the lock, then lets it write.
func applyAfterShutdown(t *testing.T, tg *loader.Target, env *testenv.Env, doomed net.Listener, cfg *config.Config) error {
	t.Helper()
	release := lockPinDir(t, tg.Dir)
	writer := env.Target()
	waiting := make(chan string, 1)
	writer.Waiting = func(msg string) { waiting <- msg }
	result := make(chan error, 1)
	go func() {
		_, err := writer.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
		result <- err
	}()
	select {
	case <-waiting: // planned, sockets found; now waiting for the lock
	case err := <-result:
		t.Fatalf("apply finished while the lock was held: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("apply neither waited for the lock nor finished")
	}
	raw, err := doomed.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var shutErr error
	if err := raw.Control(func(fd uintptr) { shutErr = unix.Shutdown(int(fd), unix.SHUT_RD) }); err != nil || shutErr != nil {
		t.Fatalf("shut down the doomed listener: %v, %v", err, shutErr)
	}
	release()
	err = <-result
	if err != nil && (strings.Contains(err.Error(), "rolling back") || strings.Contains(err.Error(), "undoing")) {
		t.Fatalf("rollback failed: %v", err)
	}
	t.Logf("failed midway: %v", err)
	return err
}

// A local route that cannot be added after another was: the first route
// is deleted again and the links get their programs back.
func testRollbackRoute(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	// IPv6 off on lo: the kernel refuses IPv6 routes through it.
	if err := env.NS.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6", []byte("1"), 0)
	}); err != nil {
		t.Fatal(err)
	}
	tg := env.Target()
	apply(t, tg, echoConfig)
	env.Count(frontend, 2)
	before := env.KernelState()
	_, err := tg.Apply(loader.Fixed(parse(t, echoConfig+`- name: four
  listen: 192.0.2.20:9000
  mode: proxy
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
- name: six
  listen: "[2001:db8::10]:9000"
  mode: proxy
  subsets:
    v1: {endpoints: ["[2001:db8::1]:9001"]}
  route:
  - {subset: v1, weight: 1}
`)), loader.ApplyOptions{})
	wantErr(t, "apply whose second local route fails", err, "2001:db8::10")
	if strings.Contains(err.Error(), "rolling back") || strings.Contains(err.Error(), "undoing") {
		t.Fatalf("rollback failed: %v", err)
	}
	t.Logf("failed: %v", err)
	env.RequireUnchanged(before)
	if got, err := askOrder(env, frontend, 3); err != nil || !slices.Equal(got, []string{"two", "one", "one"}) {
		t.Fatalf("after the rollback: %v, %v; want the old 80/20 sequence to go on", got, err)
	}
}

// A write that fails after others were made is rolled back: maps, links,
// routes and round-robin positions are as before. The failure is natural:
// a listener shut down between planning (which found it listening) and
// writing (the kernel refuses a closed socket in the sockmap). Holding the
// writer lock pins the moment: Apply plans, then waits for the lock.
func testRollbackMidway(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	env.Echo("127.0.0.1:9004", "four")
	doomed := env.Listen("127.0.0.1:9003")
	tg := env.Target()
	apply(t, tg, echoConfig)
	if got, err := askOrder(env, frontend, 2); err != nil || !slices.Equal(got, []string{"one", "one"}) {
		t.Fatalf("first connections: %v, %v", got, err)
	}
	before := env.KernelState()

	// tcp-echo is updated (its table swapped), fresh is added with a
	// local route, then doomed's socket cannot be registered.
	cfg := parse(t, strings.Replace(echoConfig, "weight: 80", "weight: 50", 1)+`- name: fresh
  listen: 192.0.2.10:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9004]}
  route:
  - {subset: v1, weight: 1}
- name: doomed
  listen: 127.0.0.100:9100
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9003]}
`)
	err := applyAfterShutdown(t, tg, env, doomed, cfg)
	wantErr(t, "apply whose last socket closed before it was written", err, "doomed", "127.0.0.1:9003")

	requireUnchangedButWriteSeq(t, env, before, 2)
	if env.HasLocalRoute("192.0.2.10") {
		t.Fatal("local route for fresh's 192.0.2.10 left after the rollback")
	}
	// The old table, with its round-robin position, goes on.
	if got, err := askOrder(env, frontend, 4); err != nil || !slices.Equal(got, []string{"two", "one", "one", "one"}) {
		t.Fatalf("after the rollback: %v, %v; want the old 80/20 sequence to go on", got, err)
	}
	wantRefused(t, env, "127.0.0.100:9100")
}

// askOrder asks n times and returns who answered, in order.
func askOrder(env *testenv.Env, addr string, n int) ([]string, error) {
	var out []string
	for range n {
		who, err := env.Ask(addr)
		if err != nil {
			return out, err
		}
		out = append(out, who)
	}
	return out, nil
}

// requireUnchangedButWriteSeq is RequireUnchanged for a write rolled back
// after it began: the owner record's write sequence moved on by seqDelta
// (readers must see that something happened meanwhile), the tables' version
// counters (which the proxy reads the same way) moved on and are even,
// everything else is exactly as before.
func requireUnchangedButWriteSeq(t *testing.T, env *testenv.Env, before *testenv.KernelState, seqDelta uint64) {
	t.Helper()
	after := env.KernelState()
	mask := func(s *testenv.KernelState) ([]string, uint64) {
		var (
			out []string
			seq uint64
			n   int
		)
		for _, l := range s.Lines() {
			subj, val, _ := strings.Cut(l, " = ")
			if strings.HasPrefix(subj, "map ") && strings.HasSuffix(subj, "/"+bpf.TcpshiftMapOwners+"[00000000]") {
				b, err := hex.DecodeString(val)
				if err != nil || len(b) < 24 {
					t.Fatalf("owner record %q", l)
				}
				seq = binary.NativeEndian.Uint64(b[16:24])
				clear(b[16:24])
				l = subj + " = " + hex.EncodeToString(b)
				n++
			}
			// Counters at zero are counted in one line (see the snapshot).
			if strings.HasPrefix(subj, "map ") && strings.HasSuffix(subj, "/"+bpf.TcpshiftMapTableVersions+"/zero entries") {
				continue
			}
			if strings.HasPrefix(subj, "map ") && strings.Contains(subj, "/"+bpf.TcpshiftMapTableVersions+"[") {
				b, err := hex.DecodeString(val)
				if err != nil || len(b) != 8 || binary.NativeEndian.Uint64(b)%2 != 0 {
					t.Fatalf("table version %q: want an even counter (no write in progress)", l)
				}
				continue
			}
			out = append(out, l)
		}
		if n != 1 {
			t.Fatalf("%d owner records in the snapshot, want 1", n)
		}
		return out, seq
	}
	a, seqA := mask(before)
	b, seqB := mask(after)
	if !slices.Equal(a, b) {
		t.Fatalf("kernel state changed (beyond the write sequence):\n%s", before.Diff(after))
	}
	if seqB != seqA+seqDelta || seqB%2 != 0 {
		t.Fatalf("write sequence %d → %d, want +%d and even", seqA, seqB, seqDelta)
	}
}

// A dry run reports the changes Apply would make, and makes none.
func TestDryRunChangesNothing(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	svc := func(name, listen, v1, v2 string) string {
		return fmt.Sprintf(`- name: %s
  listen: %s
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: %s}
  - {subset: v2, weight: %s}
`, name, listen, v1, v2)
	}
	x := parse(t, "services:\n"+svc("a", "127.0.0.100:9000", "80", "20")+svc("b", "127.0.0.101:9000", "1", "1")+svc("c", "127.0.0.102:9000", "1", "0"))
	y := parse(t, "services:\n"+svc("a", "127.0.0.100:9000", "80", "20")+svc("b", "127.0.0.101:9000", "3", "1")+svc("d", "127.0.0.103:9000", "0", "1"))
	type change struct {
		service, action string
		mode            tsmaps.Mode
	}
	list := func(cs []loader.Change) []change {
		var out []change
		for _, c := range cs {
			out = append(out, change{c.Service, c.Action, c.Mode})
		}
		return out
	}
	lookup := tsmaps.ModeLookup

	empty := env.KernelState()
	changes, err := tg.Apply(loader.Fixed(x), loader.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := list(changes), []change{{"a", "added", lookup}, {"b", "added", lookup}, {"c", "added", lookup}}; !slices.Equal(got, want) {
		t.Fatalf("dry run from empty state: %v, want %v", got, want)
	}
	env.RequireUnchanged(empty)
	if _, err := os.Stat(filepath.Join(env.BPFFS, "tcpshift")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run made %s: %v", filepath.Join(env.BPFFS, "tcpshift"), err)
	}

	real, err := tg.Apply(loader.Fixed(x), loader.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Down() })
	if !slices.Equal(list(real), list(changes)) {
		t.Fatalf("apply did %v, the dry run said %v", list(real), list(changes))
	}
	env.Count("127.0.0.100:9000", 2) // move a round-robin position
	// sockops counts the backends' closes as the kernel gets to them:
	// snapshot once both are counted, so only a dry run could move it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := tg.Status("a")
		if err != nil {
			t.Fatal(err)
		}
		var active, closedIn uint64
		for _, sub := range st.Services[0].Subsets {
			active += sub.Active
			closedIn += sub.BytesIn
		}
		if active == 0 && closedIn == 2*6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service a: %d active, %d bytes in after 2 closed exchanges, want 0 and 12", active, closedIn)
		}
		time.Sleep(10 * time.Millisecond)
	}
	applied := env.KernelState()

	changes, err = tg.Apply(loader.Fixed(y), loader.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []change{{"a", "unchanged", lookup}, {"b", "updated", lookup}, {"d", "added", lookup}, {"c", "removed", 0}}
	if got := list(changes); !slices.Equal(got, want) {
		t.Fatalf("dry run over applied state: %v, want %v", got, want)
	}
	env.RequireUnchanged(applied)
	if _, err := env.Dial("127.0.0.103:9000"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dry run made d answer: %v", err)
	}
	// Dry runs of what is in force change nothing and say so.
	changes, err = tg.Apply(loader.Fixed(x), loader.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := list(changes), []change{{"a", "unchanged", lookup}, {"b", "unchanged", lookup}, {"c", "unchanged", lookup}}; !slices.Equal(got, want) {
		t.Fatalf("dry run of the file in force: %v, want %v", got, want)
	}
	env.RequireUnchanged(applied)

	real, err = tg.Apply(loader.Fixed(y), loader.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := list(real); !slices.Equal(got, want) {
		t.Fatalf("apply did %v, the dry run said %v", got, want)
	}
	if got := env.Count("127.0.0.103:9000", 2); !maps.Equal(got, map[string]int{"two": 2}) {
		t.Fatalf("d after apply: %v", got)
	}
}

// lockHelperEnv makes the test binary, run again, a process that holds the
// writer lock on a directory until its stdin closes.
const lockHelperEnv = "TCPSHIFT_TEST_HOLD_LOCK"

// A writer that waits for the lock says so, and names the holder: another
// process by pid and command line; this very process as "another writer".
func TestLockWaitSaysWho(t *testing.T) {
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		holdLockForParent(dir)
		return
	}
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)

	// waitFor runs SetWeights v1=w, 100-w through a second Target while
	// the lock is held, and returns what it said after 1.2s.
	waitFor := func(w uint64, release func()) string {
		t.Helper()
		writer := env.Target()
		said := make(chan string, 4)
		writer.Waiting = func(msg string) { said <- msg }
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := writer.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: w}, {Subset: "v2", Weight: 100 - w}})
			done <- err
		}()
		time.Sleep(1200 * time.Millisecond)
		var msg string
		select {
		case msg = <-said:
		default:
			t.Fatalf("after %v waiting for the lock, the writer said nothing", time.Since(start).Round(time.Millisecond))
		}
		select {
		case err := <-done:
			t.Fatalf("set-weight finished while the lock was held: %v", err)
		default:
		}
		release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("set-weight after the lock was released: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("set-weight still waiting 5s after the lock was released")
		}
		s := status(t, tg)
		if s.Subsets[0].Weight != w || s.Subsets[1].Weight != 100-w || s.Subsets[0].Percent != float64(w) {
			t.Fatalf("after set-weight v1=%d: status %+v", w, s.Subsets)
		}
		if len(said) != 0 {
			t.Errorf("the writer said more than once: %q", <-said)
		}
		return msg
	}

	// This process holds the lock through its own open of the directory.
	msg := waitFor(0, lockPinDir(t, tg.Dir))
	t.Logf("lock held by this process: %s", msg)
	for _, s := range []string{"waiting for another writer", "holds the lock on " + tg.Dir} {
		if !strings.Contains(msg, s) {
			t.Fatalf("waiting message %q does not say %q", msg, s)
		}
	}
	if own := fmt.Sprintf("pid %d", os.Getpid()); strings.Contains(msg, own) {
		t.Fatalf("waiting message %q names this process (%s) as the holder", msg, own)
	}
	if got := env.Count(frontend, 4); !maps.Equal(got, map[string]int{"two": 4}) {
		t.Fatalf("after v1=0: %v, want all to two", got)
	}

	// Another process holds it: it is named by pid and command line.
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockWaitSaysWho$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+tg.Dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock holder process said %q, %v", line, err)
	}
	msg = waitFor(30, func() { stdin.Close() })
	t.Logf("lock held by another process: %s", msg)
	who := fmt.Sprintf("waiting for pid %d (%s -test.run=^TestLockWaitSaysWho$", cmd.Process.Pid, os.Args[0])
	if !strings.Contains(msg, who) {
		t.Fatalf("waiting message %q does not name the holder as %q", msg, who)
	}
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"one": 3, "two": 7}) {
		t.Fatalf("after v1=30 v2=70: %v, want 3/7", got)
	}
}

// holdLockForParent is the lock holder process: it locks dir, says
// "locked" and keeps the lock until its stdin closes.
func holdLockForParent(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.Flock(fd, unix.LOCK_EX)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lock %s: %v\n", dir, err)
		os.Exit(1)
	}
	fmt.Println("locked")
	var buf [1]byte
	os.Stdin.Read(buf[:])
	unix.Close(fd)
}

// Refused first applies racing each other: each is refused for its own
// reason (here: --cgroup is no cgroup), never for the pin directory the
// other one removed as it unlocked, and nothing is left behind.
func TestConcurrentRefusedFirstApplies(t *testing.T) {
	env := testenv.New(t)
	empty := env.KernelState()
	var targets [3]*loader.Target
	for i := range targets {
		tg, err := loader.Open(env.NS.Path(), env.BPFFS, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tg.Close() })
		targets[i] = tg
	}
	cfg := parse(t, `services:
- name: c
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
`)
	for round := range 5000 {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [3]error
		)
		for i, tg := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err == nil || !strings.Contains(err.Error(), "not a cgroup v2 directory") {
				t.Fatalf("round %d: apply refused with %v, want not a cgroup v2 directory", round, err)
			}
		}
	}
	env.RequireUnchanged(empty)
}

// A writer killed mid-write leaves the write sequence odd. Readers that
// find no writer holding the lock read the state as it is (once
// ReadConsistent gave up waiting): status does, and so must a dry run.
func TestDryRunAfterKilledWriter(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	o, err := set.Owner()
	if err == nil {
		o.WriteSeq |= 1 // as a writer killed between its writes left it
		err = set.Owners.Put(uint32(0), &o)
	}
	set.Close()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if st, err := tg.Status(""); err != nil || len(st.Services) != 1 {
		t.Fatalf("status after a killed writer: %v", err)
	}
	t.Logf("status took %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	changes, err := tg.Apply(loader.Fixed(parse(t, echoConfig)), loader.ApplyOptions{DryRun: true})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("dry run after a killed writer (after %v): %v", took.Round(time.Millisecond), err)
	}
	if got := changeList(changes); got != "tcp-echo unchanged" {
		t.Fatalf("dry run after a killed writer: %q after %v", got, took.Round(time.Millisecond))
	}
	// The next writer goes on from the odd sequence and leaves it even.
	if _, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(echoConfig, "weight: 80", "weight: 60", 1))), loader.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	set, err = tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if o2, err := set.Owner(); err != nil || o2.WriteSeq%2 != 0 || o2.WriteSeq <= o.WriteSeq {
		t.Fatalf("write sequence %d after the next apply (killed writer left %d): %v", o2.WriteSeq, o.WriteSeq, err)
	}
}

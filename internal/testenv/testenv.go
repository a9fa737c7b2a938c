// Package testenv gives privileged tests a private world: a fresh network
// namespace with lo up, a private bpffs, echo servers and clients inside the
// namespace. Everything is removed when the test ends, so the host is left
// exactly as it was.
package testenv

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
)

// EchoConfig is the route config for Istio's tcp-echo task: v1
// ("one") on 127.0.0.1:9001 and v2 ("two") on 127.0.0.1:9002, 80/20.
const EchoConfig = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  policy: roundrobin
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

// Env is one test's namespace and bpffs.
type Env struct {
	t      testing.TB
	NS     *loader.Namespace
	BPFFS  string
	Cgroup string // a throwaway cgroup for the connect-time hooks
}

// New makes a fresh network namespace and mounts a private bpffs. It fails
// (never skips) when that is impossible: the kernel tests must run.
func New(t testing.TB) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel tests need root: run sudo make test")
	}
	ns, err := loader.NewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	cg, err := loader.TempCgroup("tcpshift-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return &Env{t: t, NS: ns, BPFFS: dir, Cgroup: cg}
}

// Join moves the whole test process into the test's cgroup until the test
// ends, so its own connect() calls run the connect-time hooks attached there.
func (e *Env) Join() {
	e.t.Helper()
	restore, err := loader.JoinCgroup(e.Cgroup)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := restore(); err != nil {
			e.t.Error(err)
		}
	})
}

// Target opens the loader on the namespace; the caller runs Down.
func (e *Env) Target() *loader.Target {
	e.t.Helper()
	tg, err := loader.Open(e.NS.Path(), e.BPFFS, e.Cgroup)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { tg.Close() })
	return tg
}

// Listen opens a (non-MPTCP) TCP listener on addr inside the namespace; it
// is closed when the test ends.
func (e *Env) Listen(addr string) net.Listener {
	e.t.Helper()
	var ln net.Listener
	err := e.NS.Do(func() (err error) {
		ln, err = listener.Listen("tcp", addr)
		return err
	})
	if err != nil {
		e.t.Fatalf("listen on %s: %v", addr, err)
	}
	e.t.Cleanup(func() { ln.Close() })
	return ln
}

// Echo starts a tcp-echo server answering with prefix on addr inside the
// namespace and returns its listener; closing it stops the server.
func (e *Env) Echo(addr, prefix string) net.Listener {
	e.t.Helper()
	ln := e.Listen(addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		echo.Serve(ln, prefix)
	}()
	e.t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln
}

// Dial connects from inside the namespace.
func (e *Env) Dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := e.NS.Do(func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

// Ask opens a connection to addr, sends one line and returns the prefix of
// the reply: the name of the backend that answered.
func (e *Env) Ask(addr string) (string, error) {
	c, err := e.Dial(addr)
	if err != nil {
		return "", err
	}
	return AskOn(c)
}

// AskOn sends one line on a connection made by a test's own dialer, closes
// it and returns the prefix of the reply, as Ask does.
func AskOn(c net.Conn) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := echo.Ask(c, "hello")
	if err != nil {
		return "", err
	}
	prefix, rest, ok := strings.Cut(reply, " ")
	if !ok || rest != "hello" {
		return "", fmt.Errorf("unexpected reply %q", reply)
	}
	return prefix, nil
}

// Count opens n connections to addr one after another and counts the
// backends that answered.
func (e *Env) Count(addr string, n int) map[string]int {
	e.t.Helper()
	got := map[string]int{}
	for i := range n {
		who, err := e.Ask(addr)
		if err != nil {
			e.t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		got[who]++
	}
	return got
}

// HasLocalRoute reports whether the namespace has a local route for addr.
func (e *Env) HasLocalRoute(addr string) bool {
	e.t.Helper()
	h, err := netlink.NewHandleAt(e.NS.Handle)
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL && r.Dst != nil && r.Dst.IP.String() == addr {
			return true
		}
	}
	return false
}

// LookupPrograms lists the ids of sk_lookup programs attached to the namespace.
func (e *Env) LookupPrograms() []ebpf.ProgramID {
	e.t.Helper()
	ids, err := link.QueryPrograms(link.QueryOptions{Target: int(e.NS.Handle), Attach: ebpf.AttachSkLookup})
	if err != nil {
		e.t.Fatalf("query sk_lookup programs: %v", err)
	}
	var out []ebpf.ProgramID
	for _, p := range ids.Programs {
		out = append(out, p.ID)
	}
	return out
}

// ProgramExists reports whether a BPF program with id is still loaded.
func (e *Env) ProgramExists(id ebpf.ProgramID) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	p.Close()
	return true
}

// Remote makes a second network namespace playing a remote host, joined to
// the test's namespace by a veth pair: here 10.0.0.1/24 and fd00::1/64,
// there 10.0.0.2/24 and fd00::2/64. It returns an Env for the remote side
// (sharing this test's bpffs and cgroup).
func (e *Env) Remote() *Env {
	e.t.Helper()
	remote, err := loader.NewNamespace()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { remote.Close() })
	h, err := netlink.NewHandleAt(e.NS.Handle)
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "here"}, PeerName: "there", PeerNamespace: netlink.NsFd(remote.Handle)}
	if err := h.LinkAdd(veth); err != nil {
		e.t.Fatalf("add veth: %v", err)
	}
	rh, err := netlink.NewHandleAt(remote.Handle)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rh.Close()
	for _, side := range []struct {
		h            *netlink.Handle
		name, v4, v6 string
	}{{h, "here", "10.0.0.1/24", "fd00::1/64"}, {rh, "there", "10.0.0.2/24", "fd00::2/64"}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, a := range []string{side.v4, side.v6} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = unix.IFA_F_NODAD
			if err := side.h.AddrAdd(l, addr); err != nil {
				e.t.Fatalf("address %s on %s: %v", a, side.name, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			e.t.Fatal(err)
		}
	}
	// The pair carries nothing until both ends have carrier, which a busy
	// machine gives a veth up to a second later; the kernel adds the
	// link-local addresses and routes only then. Return once it has, so
	// a snapshot taken now is one that stays.
	for _, side := range []struct {
		h    *netlink.Handle
		name string
	}{{h, "here"}, {rh, "there"}} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, err := side.h.LinkByName(side.name)
			if err != nil {
				e.t.Fatal(err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("veth %s: no carrier after 5 s (operstate %s)", side.name, l.Attrs().OperState)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return &Env{t: e.t, NS: remote, BPFFS: e.BPFFS, Cgroup: e.Cgroup}
}

// AddDefaultRoute routes everything not local through gw in the test's
// namespace, as a host's default route to the world does.
func (e *Env) AddDefaultRoute(gw string) error {
	h, err := netlink.NewHandleAt(e.NS.Handle)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// CgroupPrograms counts the BPF programs attached to the test's cgroup for
// the connect-time hooks.
func (e *Env) CgroupPrograms() int {
	e.t.Helper()
	return CgroupPrograms(e.t, e.Cgroup, ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCgroupInet4GetPeername, ebpf.AttachCgroupInet6GetPeername)
}

// CgroupPrograms counts the programs attached to the cgroup dir at the
// given attach types.
func CgroupPrograms(t testing.TB, dir string, types ...ebpf.AttachType) int {
	t.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	n := 0
	for _, at := range types {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			t.Fatalf("query %s programs: %v", at, err)
		}
		n += len(res.Programs)
	}
	return n
}

// WaitListening waits until something accepts connections on addr inside
// the namespace, for servers started as separate processes.
func (e *Env) WaitListening(addr string) {
	e.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := e.Dial(addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("nothing listens on %s: %v", addr, err)
		}
	}
}

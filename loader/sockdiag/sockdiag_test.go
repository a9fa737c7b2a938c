package sockdiag

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests run against the real kernel, as root, each in a fresh network
// namespace with lo up. They never skip.

// newNS makes a fresh network namespace with lo up, closed when the test ends.
// (This mirrors loader.NewNamespace; the package does not import loader so
// that loader can import it.)
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel tests need root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current network namespace: %v", err)
	}
	defer orig.Close()
	h, newErr := netns.New() // switches this thread into it
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime discards it.
		t.Fatalf("return to network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if newErr != nil {
		t.Fatalf("new network namespace: %v", newErr)
	}
	t.Cleanup(func() { h.Close() })
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink in new namespace: %v", err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo: %v", err)
	}
	return h
}

// inNS runs fn on a thread switched into ns.
func inNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current network namespace: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter network namespace: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("return to network namespace: %v", err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func listen(t testing.TB, ns netns.NsHandle, network, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	inNS(t, ns, func() {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false) // plain TCP: Go >= 1.24 listens with MPTCP by default
		var err error
		if ln, err = lc.Listen(context.Background(), network, addr); err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

type pair struct{ client, server *net.TCPConn }

// connect opens n connections to ln from inside ns.
func connect(t testing.TB, ns netns.NsHandle, ln *net.TCPListener, network string, n int) []pair {
	t.Helper()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	if addr.Addr().IsUnspecified() {
		addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addr.Port())
	}
	pairs := make([]pair, 0, n)
	inNS(t, ns, func() {
		d := net.Dialer{Timeout: 5 * time.Second}
		d.SetMultipathTCP(false)
		for i := range n {
			c, err := d.Dial(network, addr.String())
			if err != nil {
				t.Fatalf("connection %d to %s: %v", i, addr, err)
			}
			t.Cleanup(func() { c.Close() })
			ln.SetDeadline(time.Now().Add(5 * time.Second))
			s, err := ln.AcceptTCP()
			if err != nil {
				t.Fatalf("accept %d on %s: %v", i, addr, err)
			}
			t.Cleanup(func() { s.Close() })
			pairs = append(pairs, pair{c.(*net.TCPConn), s})
		}
	})
	return pairs
}

// control runs fn with the socket's fd.
func control(t testing.TB, c syscall.Conn, fn func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

func cookieOf(t testing.TB, c syscall.Conn) uint64 {
	t.Helper()
	var cookie uint64
	control(t, c, func(fd int) {
		var err error
		if cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
			t.Fatalf("SO_COOKIE: %v", err)
		}
	})
	return cookie
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// kernelView is what a dump should say of c, read from the socket itself:
// family, addresses as the kernel keeps them (IPv4-mapped on dual-stack
// sockets), cookie.
func kernelView(t testing.TB, c syscall.Conn, state uint8) Socket {
	t.Helper()
	s := Socket{State: state}
	control(t, c, func(fd int) {
		fam, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			t.Fatalf("SO_DOMAIN: %v", err)
		}
		s.Family = uint8(fam)
		s.Cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			t.Fatalf("SO_COOKIE: %v", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatalf("getsockname: %v", err)
		}
		s.Src = addrPort(sa)
		if state == stateListen {
			if s.Family == unix.AF_INET {
				s.Dst = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
			} else {
				s.Dst = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
			}
			return
		}
		sa, err = unix.Getpeername(fd)
		if err != nil {
			t.Fatalf("getpeername: %v", err)
		}
		s.Dst = addrPort(sa)
	})
	return s
}

// collect walks ns and returns the sockets by cookie, failing on duplicates.
func collect(t testing.TB, ns netns.NsHandle, m *ebpf.Map) map[uint64]*Socket {
	t.Helper()
	got := map[uint64]*Socket{}
	err := Walk(ns, m, func(s *Socket) error {
		if prev, dup := got[s.Cookie]; dup {
			return fmt.Errorf("cookie %d twice: %s and %s", s.Cookie, prev, s)
		}
		got[s.Cookie] = s
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return got
}

func identity(s *Socket) string {
	return fmt.Sprintf("family %d state %s %s->%s if %d cookie %d", s.Family, stateName(s.State), s.Src, s.Dst, s.Ifindex, s.Cookie)
}

// expectExactly checks the walk returned exactly the want sockets (identity only).
func expectExactly(t testing.TB, got map[uint64]*Socket, want []Socket) {
	t.Helper()
	seen := map[uint64]bool{}
	for i := range want {
		w := &want[i]
		seen[w.Cookie] = true
		g, ok := got[w.Cookie]
		if !ok {
			t.Errorf("walk misses %s", identity(w))
			continue
		}
		if identity(g) != identity(w) {
			t.Errorf("walk gives %s, want %s", identity(g), identity(w))
		}
	}
	for c, g := range got {
		if !seen[c] {
			t.Errorf("walk gives unexpected %s", identity(g))
		}
	}
}

func TestWalkListsListenersAndBothEnds(t *testing.T) {
	ns := newNS(t)
	ln4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, ns, "tcp6", "[::1]:0")
	lnDual := listen(t, ns, "tcp", "[::]:0") // AF_INET6, accepts IPv4 too
	p4 := connect(t, ns, ln4, "tcp4", 3)
	p6 := connect(t, ns, ln6, "tcp6", 3)
	pDual := connect(t, ns, lnDual, "tcp4", 2)

	want := []Socket{
		kernelView(t, ln4, stateListen),
		kernelView(t, ln6, stateListen),
		kernelView(t, lnDual, stateListen),
	}
	for _, ps := range [][]pair{p4, p6, pDual} {
		for _, p := range ps {
			want = append(want, kernelView(t, p.client, stateEstablished), kernelView(t, p.server, stateEstablished))
		}
	}
	got := collect(t, ns, nil)
	if len(got) != 3+2*8 {
		t.Errorf("walk gives %d sockets, want %d", len(got), 3+2*8)
	}
	expectExactly(t, got, want)

	// Spot checks of the kernel's view, independent of kernelView.
	if s := got[cookieOf(t, p4[0].client)]; s == nil || s.Family != unix.AF_INET ||
		s.Dst != ln4.Addr().(*net.TCPAddr).AddrPort() || !s.Src.Addr().Is4() {
		t.Errorf("IPv4 client: %v", s)
	}
	if s := got[cookieOf(t, p6[0].server)]; s == nil || s.Family != unix.AF_INET6 ||
		s.Src != ln6.Addr().(*net.TCPAddr).AddrPort() || s.Dst.Addr() != netip.IPv6Loopback() {
		t.Errorf("IPv6 server: %v", s)
	}
	// A dual-stack socket serving IPv4 is AF_INET6 with IPv4-mapped addresses.
	if s := got[cookieOf(t, pDual[0].server)]; s == nil || s.Family != unix.AF_INET6 ||
		!s.Src.Addr().Is4In6() || s.Src.Addr().Unmap() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("dual-stack server: %v", s)
	}
	for _, s := range got {
		if s.Storage != nil {
			t.Errorf("%s has storage without a map", s)
		}
		if s.State == stateEstablished && s.FinReceived() {
			t.Errorf("%s: FinReceived", s)
		}
	}
}

// newStorageMap makes an sk_storage map with a 16-byte value (two __u64).
func newStorageMap(t testing.TB) *ebpf.Map {
	t.Helper()
	u64 := &btf.Int{Name: "__u64", Size: 8}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:      ebpf.SkStorage,
		KeySize:   4,
		ValueSize: 16,
		Flags:     unix.BPF_F_NO_PREALLOC,
		Key:       &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value: &btf.Struct{Name: "test_value", Size: 16, Members: []btf.Member{
			{Name: "a", Type: u64, Offset: 0},
			{Name: "b", Type: u64, Offset: 64},
		}},
	})
	if err != nil {
		t.Fatalf("create sk_storage map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func put(t testing.TB, m *ebpf.Map, c syscall.Conn, value []byte) {
	t.Helper()
	control(t, c, func(fd int) {
		if err := m.Put(int32(fd), value); err != nil {
			t.Fatalf("store a value for fd %d: %v", fd, err)
		}
	})
}

func value(tag byte, i int) []byte {
	v := bytes.Repeat([]byte{tag}, 16)
	native.PutUint64(v[8:], uint64(i)*0x0101010101+7)
	return v
}

func checkStorage(t testing.TB, got map[uint64]*Socket, want map[uint64][]byte, what string) {
	t.Helper()
	for c, v := range want {
		s, ok := got[c]
		if !ok {
			t.Errorf("%s: walk misses socket %d", what, c)
			continue
		}
		if !bytes.Equal(s.Storage, v) {
			t.Errorf("%s: %s storage %x, want %x", what, s, s.Storage, v)
		}
	}
	for c, s := range got {
		if _, ok := want[c]; !ok && s.Storage != nil {
			t.Errorf("%s: %s storage %x, want none", what, s, s.Storage)
		}
	}
}

func TestWalkStorage(t *testing.T) {
	ns := newNS(t)
	a, b := newStorageMap(t), newStorageMap(t)
	ln4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, ns, "tcp6", "[::1]:0")
	p4 := connect(t, ns, ln4, "tcp4", 4)
	p6 := connect(t, ns, ln6, "tcp6", 4)

	// Map a: some sockets of each kind; map b: every socket, other values.
	inA := []syscall.Conn{ln4, p4[0].client, p4[2].client, p4[1].server, p6[1].client, p6[0].server, p6[3].server}
	all := []syscall.Conn{ln4, ln6}
	for _, p := range append(append([]pair{}, p4...), p6...) {
		all = append(all, p.client, p.server)
	}
	wantA, wantB := map[uint64][]byte{}, map[uint64][]byte{}
	for i, c := range inA {
		v := value('a', i)
		put(t, a, c, v)
		wantA[cookieOf(t, c)] = v
	}
	for i, c := range all {
		v := value('b', i)
		put(t, b, c, v)
		wantB[cookieOf(t, c)] = v
	}

	got := collect(t, ns, a)
	if len(got) != len(all) {
		t.Errorf("walk with map a gives %d sockets, want %d", len(got), len(all))
	}
	checkStorage(t, got, wantA, "map a")
	checkStorage(t, collect(t, ns, b), wantB, "map b")
	checkStorage(t, collect(t, ns, nil), nil, "no map")

	// A deleted value is gone from the next walk.
	control(t, p6[1].client, func(fd int) {
		if err := a.Delete(int32(fd)); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})
	delete(wantA, cookieOf(t, p6[1].client))
	checkStorage(t, collect(t, ns, a), wantA, "map a after delete")

	// Only socket-storage maps are accepted.
	h, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := Walk(ns, h, func(*Socket) error { return nil }); err == nil {
		t.Error("walk with a hash map: no error")
	}
}

func TestWalkStopsOnCallbackError(t *testing.T) {
	ns := newNS(t)
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	connect(t, ns, ln, "tcp4", 3)
	stop := errors.New("enough")
	calls := 0
	err := Walk(ns, nil, func(*Socket) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Errorf("walk returned %v after %d calls, want %v after 2", err, calls, stop)
	}
}

// waitFor walks ns until ok accepts the sockets, or fails after 5s.
func waitFor(t testing.TB, ns netns.NsHandle, what string, ok func(map[uint64]*Socket) string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		problem := ok(collect(t, ns, nil))
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, problem)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWalkBytes(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			ns := newNS(t)
			ln := listen(t, ns, tc.network, tc.addr)
			p := connect(t, ns, ln, tc.network, 1)[0]
			const up, down = 300_001, 123_457 // client->server, server->client
			cc, sc := cookieOf(t, p.client), cookieOf(t, p.server)

			transfer := func(from, to *net.TCPConn, n int) {
				t.Helper()
				errc := make(chan error, 1)
				go func() {
					_, err := from.Write(bytes.Repeat([]byte{'x'}, n))
					errc <- err
				}()
				to.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(to, make([]byte, n)); err != nil {
					t.Fatalf("read %d bytes: %v", n, err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("write %d bytes: %v", n, err)
				}
			}
			transfer(p.client, p.server, up)
			transfer(p.server, p.client, down)

			counts := func(s *Socket, sent, received uint64) string {
				if s == nil {
					return "socket missing"
				}
				if s.BytesSent != sent || s.BytesReceived != received || s.BytesRetrans != 0 {
					return fmt.Sprintf("%s: sent %d received %d retrans %d, want %d %d 0",
						s, s.BytesSent, s.BytesReceived, s.BytesRetrans, sent, received)
				}
				return ""
			}
			waitFor(t, ns, "byte counts", func(got map[uint64]*Socket) string {
				if pr := counts(got[cc], up, down); pr != "" {
					return "client " + pr
				}
				return counts(got[sc], down, up)
			})

			// The client's FIN: the server is in CLOSE_WAIT and its
			// bytes_received counts the FIN; the client's bytes_sent does not.
			if err := p.client.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := p.server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("server read after FIN: %d, %v", n, err)
			}
			waitFor(t, ns, "half close", func(got map[uint64]*Socket) string {
				c, s := got[cc], got[sc]
				if c == nil || s == nil {
					return "socket missing"
				}
				if s.State != stateCloseWait || !s.FinReceived() || c.State != stateFinWait2 || c.FinReceived() {
					return fmt.Sprintf("states %s / %s (FinReceived %v / %v)", stateName(c.State), stateName(s.State), c.FinReceived(), s.FinReceived())
				}
				if pr := counts(c, up, down); pr != "" {
					return "client " + pr
				}
				return counts(s, down, up+1)
			})

			// Closed both ways: the client is in TIME_WAIT and the server
			// closed; Walk reports neither.
			if err := p.server.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := p.client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("client read after FIN: %d, %v", n, err)
			}
			waitFor(t, ns, "full close", func(got map[uint64]*Socket) string {
				if got[cc] != nil || got[sc] != nil || len(got) != 1 {
					return fmt.Sprintf("walk still gives %d sockets: client %v server %v", len(got), got[cc], got[sc])
				}
				return ""
			})
		})
	}
}

func readErr(c *net.TCPConn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if err == nil {
		return fmt.Errorf("read %d bytes", n)
	}
	return err
}

func pingPong(t testing.TB, p pair) {
	t.Helper()
	for _, d := range [][2]*net.TCPConn{{p.client, p.server}, {p.server, p.client}} {
		if _, err := d[0].Write([]byte("ping")); err != nil {
			t.Errorf("write on a surviving connection: %v", err)
			return
		}
		d[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(d[1], buf); err != nil || string(buf) != "ping" {
			t.Errorf("read on a surviving connection: %q, %v", buf, err)
		}
	}
}

func TestDestroy(t *testing.T) {
	ns := newNS(t)
	ln4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, ns, "tcp6", "[::1]:0")
	lnDual := listen(t, ns, "tcp", "[::]:0")
	p4 := connect(t, ns, ln4, "tcp4", 3)
	p6 := connect(t, ns, ln6, "tcp6", 3)
	pDual := connect(t, ns, lnDual, "tcp4", 3)

	type victim struct {
		name       string
		kill, peer *net.TCPConn
	}
	victims := []victim{
		{"IPv4 server end", p4[1].server, p4[1].client},
		{"IPv6 client end", p6[0].client, p6[0].server},
		{"IPv4-mapped server end", pDual[2].server, pDual[2].client},
	}
	survivors := []pair{p4[0], p4[2], p6[1], p6[2], pDual[0], pDual[1]}

	before := collect(t, ns, nil)
	var destroyed []*Socket
	for _, v := range victims {
		s := before[cookieOf(t, v.kill)]
		if s == nil {
			t.Fatalf("%s: not in the walk", v.name)
		}
		if err := Destroy(ns, s); err != nil {
			t.Fatalf("%s: destroy %s: %v", v.name, s, err)
		}
		destroyed = append(destroyed, s)
	}
	for _, v := range victims {
		if err := readErr(v.peer); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("%s: peer read: %v, want ECONNRESET or ECONNABORTED", v.name, err)
		}
		if err := readErr(v.kill); !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("%s: own read: %v, want ECONNABORTED", v.name, err)
		}
	}
	for _, p := range survivors {
		pingPong(t, p)
	}

	// Both ends of the destroyed connections left the namespace's tables.
	after := collect(t, ns, nil)
	for _, v := range victims {
		for _, c := range []*net.TCPConn{v.kill, v.peer} {
			if s := after[cookieOf(t, c)]; s != nil {
				t.Errorf("%s: still in the walk: %s", v.name, s)
			}
		}
	}
	if want := 3 + 2*len(survivors); len(after) != want {
		t.Errorf("walk after destroy gives %d sockets, want %d", len(after), want)
	}

	// A socket already gone: ENOENT.
	for _, s := range destroyed {
		err := Destroy(ns, s)
		if !errors.Is(err, unix.ENOENT) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("destroy of a gone socket %s: %v, want ENOENT", s, err)
		}
	}
	// The right tuple with another cookie: ENOENT, and the socket lives on.
	live := *after[cookieOf(t, p4[0].server)]
	live.Cookie++
	if err := Destroy(ns, &live); !errors.Is(err, unix.ENOENT) {
		t.Errorf("destroy with a wrong cookie: %v, want ENOENT", err)
	}
	pingPong(t, p4[0])
}

// fdCount counts this process's open file descriptors.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestProbes(t *testing.T) {
	ns := newNS(t)
	run := func() {
		inNS(t, ns, func() {
			if err := ProbeStorages(); err != nil {
				t.Errorf("ProbeStorages: %v", err)
			}
			if err := ProbeDestroy(); err != nil {
				t.Errorf("ProbeDestroy: %v", err)
			}
		})
	}
	run() // first run: lets libraries open what they keep open
	fds := fdCount(t)
	run()
	if n := fdCount(t); n != fds {
		t.Errorf("probes leak file descriptors: %d before, %d after", fds, n)
	}
	if got := collect(t, ns, nil); len(got) != 0 {
		for _, s := range got {
			t.Errorf("probes left %s", s)
		}
	}
}

func TestProbesWithLoopbackDown(t *testing.T) {
	// A namespace with lo down: ProbeDestroy fails with a clear error.
	if os.Geteuid() != 0 {
		t.Fatal("kernel tests need root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		netns.Set(orig)
		t.Fatal(err)
	}
	defer ns.Close()
	errS, errD := ProbeStorages(), ProbeDestroy()
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
	// Binding and listening on 127.0.0.1 work with lo down, so the storage
	// probe does not need lo; connecting does not.
	if errS != nil {
		t.Errorf("ProbeStorages with lo down: %v", errS)
	}
	if !errors.Is(errD, unix.ENETUNREACH) && !errors.Is(errD, unix.EADDRNOTAVAIL) {
		t.Errorf("ProbeDestroy with lo down: %v, want ENETUNREACH", errD)
	}
}

func TestWalkManyConnections(t *testing.T) {
	ns := newNS(t)
	m := newStorageMap(t)
	ln4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, ns, "tcp6", "[::1]:0")
	const n = 5000
	pairs := append(connect(t, ns, ln4, "tcp4", n/2), connect(t, ns, ln6, "tcp6", n/2)...)

	want := map[uint64][]byte{}
	families := map[uint64]uint8{}
	for i, p := range pairs {
		for j, c := range []*net.TCPConn{p.client, p.server} {
			s := kernelView(t, c, stateEstablished)
			families[s.Cookie] = s.Family
			if (2*i+j)%7 == 0 {
				v := value('m', 2*i+j)
				put(t, m, c, v)
				want[s.Cookie] = v
			}
		}
	}

	counts := map[[2]uint8]int{}
	withStorage := 0
	st, err := walk(ns, m, walkStates, func(s *Socket) error {
		counts[[2]uint8{s.Family, s.State}]++
		if s.State == stateEstablished {
			if fam, ok := families[s.Cookie]; !ok || fam != s.Family {
				return fmt.Errorf("unexpected %s", s)
			}
			delete(families, s.Cookie) // each exactly once
		}
		if s.Storage != nil {
			withStorage++
			if !bytes.Equal(s.Storage, want[s.Cookie]) {
				return fmt.Errorf("%s: storage %x, want %x", s, s.Storage, want[s.Cookie])
			}
		} else if want[s.Cookie] != nil {
			return fmt.Errorf("%s: no storage, want %x", s, want[s.Cookie])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	wantCounts := map[[2]uint8]int{
		{unix.AF_INET, stateListen}: 1, {unix.AF_INET, stateEstablished}: n,
		{unix.AF_INET6, stateListen}: 1, {unix.AF_INET6, stateEstablished}: n,
	}
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("walk counts %v, want %v", counts, wantCounts)
	}
	if len(families) != 0 {
		t.Errorf("walk misses %d connected sockets", len(families))
	}
	if withStorage != len(want) {
		t.Errorf("walk gives %d sockets with storage, want %d", withStorage, len(want))
	}
	// Streamed: many datagrams, none bigger than the initial buffer.
	t.Logf("%d sockets in %d datagrams, buffer %d bytes", 2*n+2, st.datagrams, st.maxBuf)
	if st.datagrams < 10 || st.maxBuf > 32<<10 {
		t.Errorf("walk read %d datagrams with a %d-byte buffer: not streamed", st.datagrams, st.maxBuf)
	}
}

func TestWalkLargeStorage(t *testing.T) {
	// Values near the 64 KiB limit of a netlink attribute make messages
	// bigger than the usual 32 KiB dump datagram.
	ns := newNS(t)
	const size = 60_000
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:      ebpf.SkStorage,
		KeySize:   4,
		ValueSize: size,
		Flags:     unix.BPF_F_NO_PREALLOC,
		Key:       &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value: &btf.Array{
			Index:  &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
			Type:   &btf.Int{Name: "unsigned char", Size: 1},
			Nelems: size,
		},
	})
	if err != nil {
		t.Fatalf("create sk_storage map: %v", err)
	}
	defer m.Close()
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	pairs := connect(t, ns, ln, "tcp4", 3)
	want := map[uint64][]byte{}
	for i, c := range []*net.TCPConn{pairs[0].client, pairs[1].server, pairs[2].client, pairs[2].server} {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(i*31 + j*7)
		}
		put(t, m, c, v)
		want[cookieOf(t, c)] = v
	}
	got := map[uint64]*Socket{}
	st, err := walk(ns, m, walkStates, func(s *Socket) error {
		got[s.Cookie] = s
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if len(got) != 7 {
		t.Errorf("walk gives %d sockets, want 7", len(got))
	}
	checkStorage(t, got, want, "large values")
	t.Logf("%d datagrams, buffer grown to %d bytes", st.datagrams, st.maxBuf)
}

// dropCaps clears caps from this thread's effective set (the thread must be
// locked) and returns a function that restores them.
func dropCaps(t testing.TB, caps ...int) func() {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	if err := unix.Capget(&hdr, &saved[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	data := saved
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
	return func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Fatalf("restore capabilities: %v", err) // the locked thread dies with the goroutine
		}
	}
}

func TestWithoutCapabilities(t *testing.T) {
	ns := newNS(t)
	m := newStorageMap(t)
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	p := connect(t, ns, ln, "tcp4", 1)[0]
	put(t, m, p.client, value('c', 1))
	s := kernelView(t, p.client, stateEstablished)

	var walkErr, plainErr, destroyErr error
	plain := 0
	inNS(t, ns, func() {
		restore := dropCaps(t, unix.CAP_BPF, unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN)
		defer restore()
		walkErr = Walk(netns.None(), m, func(*Socket) error { return nil })
		plainErr = Walk(netns.None(), nil, func(*Socket) error { plain++; return nil })
		destroyErr = Destroy(netns.None(), &s)
	})
	if !errors.Is(walkErr, unix.EPERM) || !bytes.Contains([]byte(walkErr.Error()), []byte("CAP_BPF")) {
		t.Errorf("walk for storage without CAP_BPF: %v, want EPERM naming CAP_BPF", walkErr)
	}
	if plainErr != nil || plain != 3 {
		t.Errorf("walk without storage and without capabilities: %d sockets, %v; want 3, nil", plain, plainErr)
	}
	if !errors.Is(destroyErr, unix.EPERM) {
		t.Errorf("destroy without CAP_NET_ADMIN: %v, want EPERM", destroyErr)
	}
	pingPong(t, p)
}

func TestKernelRejectsOtherMaps(t *testing.T) {
	// Walk refuses other map types itself; sent anyway, the kernel answers
	// with NLMSG_ERROR EINVAL, which the dump returns.
	ns := newNS(t)
	h, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := dial(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	err = c.dump(unix.AF_INET, walkStates, h.FD(), 1, func(*Socket) error { return nil })
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("dump with a hash map: %v, want EINVAL", err)
	}
	t.Log(err)
	// The socket is still usable for the next request.
	if err := c.dump(unix.AF_INET, walkStates, -1, 0, func(*Socket) error { return nil }); err != nil {
		t.Errorf("dump after the error: %v", err)
	}
}

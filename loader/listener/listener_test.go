package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestMain checks that no thread of the test process is left in a test
// network namespace.
func TestMain(m *testing.M) {
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, task := range tasks {
		link, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && link != host {
			fmt.Fprintf(os.Stderr, "thread %s left in %s (host %s)\n", task.Name(), link, host)
			code = 1
		}
	}
	os.Exit(code)
}

// newNetns makes a fresh network namespace with lo up, without moving the
// calling goroutine's thread.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New() // switches this thread
		if err != nil {
			// netns.New may fail after unshare; never reuse this thread.
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			c <- result{err: err}
			return
		}
		if err := netns.Set(orig); err != nil {
			ns.Close()
			c <- result{err: fmt.Errorf("restore netns: %w", err)} // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		c <- result{ns: ns}
	}()
	r := <-c
	if r.err != nil {
		t.Fatalf("new netns: %v", r.err)
	}
	ns := r.ns
	t.Cleanup(func() { ns.Close() })

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

// listenIn listens in ns, using lc (nil: MPTCP disabled).
func listenIn(ns netns.NsHandle, lc *net.ListenConfig, network, address string) (net.Listener, error) {
	if lc == nil {
		lc = &net.ListenConfig{}
		lc.SetMultipathTCP(false)
	}
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = lc.Listen(context.Background(), network, address)
		return err
	})
	return ln, err
}

func mustListenIn(t *testing.T, ns netns.NsHandle, lc *net.ListenConfig, network, address string) net.Listener {
	t.Helper()
	ln, err := listenIn(ns, lc, network, address)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, address, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrOf(t *testing.T, ln net.Listener) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func rawFD(t *testing.T, sc syscall.Conn) int {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// checkSocket checks the duplicate: a listening TCP socket bound to want.
func checkSocket(t *testing.T, s *Socket, want netip.AddrPort, family int) {
	t.Helper()
	if s.Addr != want {
		t.Errorf("Addr = %v, want %v", s.Addr, want)
	}
	if s.Family != family {
		t.Errorf("Family = %d, want %d", s.Family, family)
	}
	if s.PID != os.Getpid() {
		t.Errorf("PID = %d, want %d", s.PID, os.Getpid())
	}
	if s.Comm == "" || s.Comm == "?" {
		t.Errorf("Comm = %q", s.Comm)
	}
	if !strings.HasPrefix(s.Owner(), fmt.Sprintf("pid %d (", os.Getpid())) {
		t.Errorf("Owner() = %q", s.Owner())
	}
	fd := rawFD(t, s.File)
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc != 1 {
		t.Errorf("SO_ACCEPTCONN = %d, %v", acc, err)
	}
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		t.Errorf("SO_PROTOCOL = %d, %v", p, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := sockaddrAddrPort(sa); got != want {
		t.Errorf("getsockname = %v, want %v", got, want)
	}
}

func TestFindExact(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		family           int
	}{
		{"tcp4", "127.0.0.1:0", unix.AF_INET},
		{"tcp6", "[::1]:0", unix.AF_INET6},
	} {
		t.Run(tc.network, func(t *testing.T) {
			ns := newNetns(t)
			ln := mustListenIn(t, ns, nil, tc.network, tc.address)
			addr := addrOf(t, ln)
			s, err := Find(ns, addr)
			if err != nil {
				t.Fatalf("Find(%v): %v", addr, err)
			}
			defer s.Close()
			checkSocket(t, s, addr, tc.family)
			if want := rawFD(t, ln.(*net.TCPListener)); s.FD != want {
				t.Errorf("FD = %d, want %d", s.FD, want)
			}
			if tc.family == unix.AF_INET6 && !s.V6Only {
				t.Errorf("V6Only = false for a tcp6 listener")
			}
		})
	}
}

func TestFindWildcard(t *testing.T) {
	ns := newNetns(t)
	ln := mustListenIn(t, ns, nil, "tcp4", "0.0.0.0:0")
	wild := addrOf(t, ln)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), wild.Port())
	s, err := Find(ns, addr)
	if err != nil {
		t.Fatalf("Find(%v): %v", addr, err)
	}
	defer s.Close()
	checkSocket(t, s, wild, unix.AF_INET)
}

func TestFindPrefersExact(t *testing.T) {
	ns := newNetns(t)
	lc := &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	wildLn := mustListenIn(t, ns, lc, "tcp4", "0.0.0.0:0")
	port := addrOf(t, wildLn).Port()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	exactLn := mustListenIn(t, ns, lc, "tcp4", addr.String())
	s, err := Find(ns, addr)
	if err != nil {
		t.Fatalf("Find(%v): %v", addr, err)
	}
	defer s.Close()
	checkSocket(t, s, addr, unix.AF_INET)
	if want := rawFD(t, exactLn.(*net.TCPListener)); s.FD != want {
		t.Errorf("FD = %d, want %d (the exact listener)", s.FD, want)
	}
}

func TestFindDualStack(t *testing.T) {
	ns := newNetns(t)
	ln := mustListenIn(t, ns, nil, "tcp", "[::]:0") // Go clears IPV6_V6ONLY for "tcp"
	wild := addrOf(t, ln)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), wild.Port())
	s, err := Find(ns, addr)
	if err != nil {
		t.Fatalf("Find(%v): %v", addr, err)
	}
	defer s.Close()
	checkSocket(t, s, wild, unix.AF_INET6)
	if s.V6Only {
		t.Errorf("V6Only = true for a dual-stack listener")
	}
}

func TestFindV6OnlyWildcardIsNotIPv4(t *testing.T) {
	ns := newNetns(t)
	ln := mustListenIn(t, ns, nil, "tcp6", "[::]:0") // IPV6_V6ONLY=1
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrOf(t, ln).Port())
	s, err := Find(ns, addr)
	if err == nil {
		s.Close()
		t.Fatalf("Find(%v) found %v, want ErrNotListening", addr, s.Addr)
	}
	if !errors.Is(err, ErrNotListening) {
		t.Fatalf("Find(%v) = %v, want ErrNotListening", addr, err)
	}
	if !strings.Contains(err.Error(), "IPV6_V6ONLY") {
		t.Errorf("error does not mention IPV6_V6ONLY: %v", err)
	}
}

func TestFindNotListening(t *testing.T) {
	ns := newNetns(t)
	// Reserve a port in the host netns by binding without listening, so that
	// no other namespace we can see is likely to listen on it.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := sockaddrAddrPort(sa)

	s, err := Find(ns, addr)
	if err == nil {
		s.Close()
		t.Fatalf("Find(%v) found %v", addr, s.Addr)
	}
	if !errors.Is(err, ErrNotListening) {
		t.Fatalf("Find(%v) = %v, want ErrNotListening", addr, err)
	}
	if !strings.Contains(err.Error(), addr.String()) {
		t.Errorf("error does not name %v: %v", addr, err)
	}
	t.Log(err)
}

func TestFindOtherNetns(t *testing.T) {
	a := newNetns(t)
	b := newNetns(t)
	ln := mustListenIn(t, b, nil, "tcp4", "127.0.0.1:0")
	addr := addrOf(t, ln)
	s, err := Find(a, addr)
	if err == nil {
		s.Close()
		t.Fatalf("Find(%v) in the wrong netns found %v", addr, s.Addr)
	}
	if !errors.Is(err, ErrOtherNetns) {
		t.Fatalf("Find(%v) = %v, want ErrOtherNetns", addr, err)
	}
	bIno, err2 := fdInode(int(b))
	if err2 != nil {
		t.Fatal(err2)
	}
	for _, want := range []string{
		addr.String(),
		fmt.Sprintf("pid %d (", os.Getpid()),
		fmt.Sprintf("net:[%d]", bIno),
		"--netns",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
	t.Log(err)

	// And it is found in the right one.
	s, err = Find(b, addr)
	if err != nil {
		t.Fatalf("Find(%v) in its own netns: %v", addr, err)
	}
	s.Close()
}

func TestFindMPTCP(t *testing.T) {
	ns := newNetns(t)
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(true)
	// Go silently falls back to TCP if MPTCP is unavailable, so check first.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOPROTOOPT) {
		t.Skipf("kernel has no MPTCP: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)

	ln := mustListenIn(t, ns, lc, "tcp4", "127.0.0.1:0")
	lfd := rawFD(t, ln.(*net.TCPListener))
	if p, err := unix.GetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_MPTCP {
		t.Fatalf("test listener SO_PROTOCOL = %d, %v; want MPTCP", p, err)
	}
	addr := addrOf(t, ln)
	s, err := Find(ns, addr)
	if err == nil {
		s.Close()
		t.Fatalf("Find(%v) accepted an MPTCP listener", addr)
	}
	if !errors.Is(err, ErrMPTCP) {
		t.Fatalf("Find(%v) = %v, want ErrMPTCP", addr, err)
	}
	for _, want := range []string{addr.String(), "GODEBUG=multipathtcp=0", "mode: connect / proxy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q: %v", want, err)
		}
	}
	t.Log(err)
}

func TestListen(t *testing.T) {
	ns := newNetns(t)
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := rawFD(t, ln.(*net.TCPListener))
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		t.Fatalf("SO_PROTOCOL = %d, %v; want %d", p, err, unix.IPPROTO_TCP)
	}
	s, err := Find(ns, addrOf(t, ln))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestParseTable(t *testing.T) {
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2329 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2329 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0
`
	got, err := parseTable(strings.NewReader(tcp))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].addr != netip.MustParseAddrPort("127.0.0.1:9001") || got[0].inode != 12345 {
		t.Errorf("tcp = %+v", got)
	}
	got, err = parseTable(strings.NewReader(tcp6))
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{netip.MustParseAddrPort("[::1]:8080"), 777},
		{netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"), 778},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("tcp6 = %+v, want %+v", got, want)
	}
}

func TestMatchOrder(t *testing.T) {
	e := func(s string, ino uint64) entry { return entry{netip.MustParseAddrPort(s), ino} }
	entries := []entry{
		e("[::]:80", 1),
		e("[::ffff:10.0.0.1]:80", 2),
		e("0.0.0.0:80", 3),
		e("10.0.0.1:80", 4),
		e("10.0.0.2:80", 5),
		e("10.0.0.1:81", 6),
		e("[fd00::1]:80", 7),
	}
	var got []string
	for _, c := range match(entries, netip.MustParseAddrPort("10.0.0.1:80")) {
		got = append(got, strconv.FormatUint(c.inode, 10))
	}
	if s := strings.Join(got, ","); s != "4,3,2,1" {
		t.Errorf("IPv4 match order = %s, want 4,3,2,1", s)
	}
	got = nil
	for _, c := range match(entries, netip.MustParseAddrPort("[fd00::1]:80")) {
		got = append(got, strconv.FormatUint(c.inode, 10))
	}
	if s := strings.Join(got, ","); s != "7,1" {
		t.Errorf("IPv6 match order = %s, want 7,1", s)
	}
}

package userspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/maps"
)

// backend listens on a free loopback port and serves every connection
// with fn until the test ends.
func backend(t *testing.T, fn func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// deadPort is a loopback port nothing listens on.
func deadPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// serveProxy runs a proxy with 2 workers for one service whose single
// subset has eps, and returns its frontend.
func serveProxy(t *testing.T, opts Options, eps ...netip.AddrPort) (*Proxy, *StaticSource, string) {
	t.Helper()
	svc := &maps.Service{ID: 1, Name: "test", Subsets: []maps.Subset{{Name: "v1", Weight: 1}}}
	for i, ep := range eps {
		svc.Subsets[0].Endpoints = append(svc.Subsets[0].Endpoints, maps.Endpoint{ID: uint32(i), Addr: ep})
	}
	src, err := NewStaticSource([]*maps.Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	opts.Source = src
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	p := New(opts)
	s := Service{ID: 1, Name: "test", Frontend: netip.MustParseAddrPort("127.0.0.1:0")}
	if err := p.Listen(s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	p.mu.Lock()
	sa, err := unix.Getsockname(p.listeners[s].fd)
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return p, src, addrPort(sa).String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// echoAll answers with everything it read once the client half-closed.
func echoAll(c *net.TCPConn) {
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	c.Write(b)
	c.CloseWrite()
}

// A client's half close reaches the backend, which answers after it, and
// the backend's FIN reaches the client.
func TestHalfCloseFromClient(t *testing.T) {
	_, _, fe := serveProxy(t, Options{}, backend(t, echoAll))
	c := dial(t, fe)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello and EOF", got, err)
	}
}

// A backend's half close reaches the client while the client goes on
// sending, and what it sends after reaches the backend.
func TestHalfCloseFromBackend(t *testing.T) {
	gotBack := make(chan string, 1)
	_, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		c.Write([]byte("greeting"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		gotBack <- string(b)
	}))
	c := dial(t, fe)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "greeting" {
		t.Fatalf("read %q, %v; want greeting and EOF", got, err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if b := <-gotBack; b != "after" {
		t.Fatalf("backend read %q, want after", b)
	}
}

// transfer sends n random bytes each way at once, half-closes and checks
// what arrives on both sides.
func TestLargeTransferBothWays(t *testing.T) {
	const n = 64 << 20
	type result struct {
		sum uint32
		n   int64
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	send := func(w io.Writer, seed uint64) uint32 {
		rng := rand.NewChaCha8([32]byte{byte(seed)})
		sum := crc32.New(table)
		// Odd sizes: both the copying and the splicing paths run.
		buf := make([]byte, 100<<10+7)
		for left := n; left > 0; {
			chunk := buf[:min(len(buf), left, 1+int(rng.Uint64()%uint64(len(buf))))]
			rng.Read(chunk)
			sum.Write(chunk)
			if _, err := w.Write(chunk); err != nil {
				return 0
			}
			left -= len(chunk)
		}
		return sum.Sum32()
	}
	recv := func(r io.Reader) result {
		sum := crc32.New(table)
		m, _ := io.Copy(sum, r)
		return result{sum.Sum32(), m}
	}
	atBackend := make(chan [2]result, 1)
	_, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		sent := make(chan uint32, 1)
		go func() {
			sent <- send(c, 2)
			c.CloseWrite()
		}()
		got := recv(c)
		atBackend <- [2]result{got, {<-sent, n}}
	}))
	c := dial(t, fe)
	sent := make(chan uint32, 1)
	go func() {
		sent <- send(c, 1)
		c.CloseWrite()
	}()
	got := recv(c)
	b := <-atBackend
	if s := <-sent; b[0].n != n || b[0].sum != s {
		t.Fatalf("towards the backend: %d bytes crc %08x, sent %d crc %08x", b[0].n, b[0].sum, n, s)
	}
	if got.n != n || got.sum != b[1].sum {
		t.Fatalf("towards the client: %d bytes crc %08x, sent %d crc %08x", got.n, got.sum, n, b[1].sum)
	}
}

// Many short exchanges, some at once, over both workers.
func TestShortConnections(t *testing.T) {
	_, _, fe := serveProxy(t, Options{}, backend(t, echoAll))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c, err := net.Dial("tcp", fe)
				if err != nil {
					errs <- err
					return
				}
				msg := fmt.Sprintf("%d-%d", g, i)
				c.Write([]byte(msg))
				c.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(c)
				c.Close()
				if err != nil || string(got) != msg {
					errs <- fmt.Errorf("%s: got %q, %v", msg, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// A backend's reset reaches the client as a reset.
func TestResetFromBackend(t *testing.T) {
	_, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 1))
		c.SetLinger(0)
	}))
	c := dial(t, fe)
	c.Write([]byte("x"))
	if _, err := io.ReadAll(c); !isReset(err) {
		t.Fatalf("read after the backend's reset: %v, want a reset", err)
	}
}

// A client's reset reaches the backend as a reset.
func TestResetFromClient(t *testing.T) {
	got := make(chan error, 1)
	_, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c)
		got <- err
	}))
	c := dial(t, fe)
	c.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	c.SetLinger(0)
	c.Close()
	if err := <-got; !isReset(err) {
		t.Fatalf("backend read after the client's reset: %v, want a reset", err)
	}
}

// With no endpoint taking connections the client gets a reset, counted
// as refused once however many endpoints were tried.
func TestRefusedAfterAttempts(t *testing.T) {
	_, src, fe := serveProxy(t, Options{}, deadPort(t), deadPort(t))
	// The reset can come before the dial has asked for the peer's address.
	c, err := net.Dial("tcp", fe)
	if err == nil {
		defer c.Close()
		_, err = io.ReadAll(c)
	}
	if !isReset(err) {
		t.Fatalf("read: %v, want a reset", err)
	}
	if n := src.RefusedCount(1); n != 1 {
		t.Fatalf("%d refused, want 1", n)
	}
}

// A refused endpoint is skipped for the next one.
func TestFailover(t *testing.T) {
	_, src, fe := serveProxy(t, Options{}, deadPort(t), backend(t, echoAll))
	for range 4 {
		c := dial(t, fe)
		c.Write([]byte("hi"))
		c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "hi" {
			t.Fatalf("read %q, %v; want hi", got, err)
		}
	}
	if n := src.RefusedCount(1); n != 0 {
		t.Fatalf("%d refused, want 0", n)
	}
}

// blackhole is a listener whose backlog is full: its SYNs go unanswered.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	ap := addrPort(sa)
	// Fill the backlog; the kernel then drops new SYNs.
	for range 3 {
		nfd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		t.Cleanup(func() { unix.Close(nfd) })
		unix.Connect(nfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(ap.Port())})
	}
	time.Sleep(50 * time.Millisecond)
	return ap
}

// A connect that hangs is given up after DialTimeout for the next
// endpoint.
func TestDialTimeout(t *testing.T) {
	_, _, fe := serveProxy(t, Options{DialTimeout: 200 * time.Millisecond, Attempts: 2}, blackhole(t), backend(t, echoAll))
	start := time.Now()
	c := dial(t, fe)
	c.Write([]byte("hi"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "hi" {
		t.Fatalf("read %q, %v; want hi", got, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("answered after %v, want the dial timeout (200ms) first", d)
	}
}

// A backend that reads nothing holds the client back: the proxy keeps at
// most a read and a pipe per direction.
func TestSlowReaderIsBounded(t *testing.T) {
	stalled := make(chan struct{})
	_, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) { <-stalled }))
	c := dial(t, fe)
	defer close(stalled)
	chunk := make([]byte, 1<<20)
	var written int
	for written < 1<<30 {
		c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Write(chunk)
		written += n
		if err != nil {
			break
		}
	}
	if written >= 64<<20 {
		t.Fatalf("the client wrote %d MiB to a backend that reads nothing", written>>20)
	}
}

// Shutdown waits for open connections until its context ends, then
// closes them, and leaves no goroutine behind.
func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) { io.Copy(c, c) }))
	c := dial(t, fe)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want the grace period to run out", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection open after shutdown")
	}
	if _, err := net.Dial("tcp", fe); err == nil {
		t.Fatal("frontend accepts after shutdown")
	}
	if err := p.Listen(Service{ID: 1, Name: "again", Frontend: netip.MustParseAddrPort("127.0.0.1:0")}); err == nil {
		t.Fatal("listen after shutdown")
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before+2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // the backend's two goroutines may remain
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
	}
}

// Sync stops listening for a service it drops; its open connections go on.
func TestSyncDropsService(t *testing.T) {
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) { io.Copy(c, c) }))
	c := dial(t, fe)
	if err := p.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", fe); err == nil {
		t.Fatal("frontend accepts after Sync dropped it")
	}
	c.Write([]byte("still"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte("still")) {
		t.Fatalf("open connection after Sync: %q, %v", got, err)
	}
}

// An IPv6 backend is dialled over IPv6, and a wildcard frontend listens
// dual-stack, as Go's net.Listen does.
func TestIPv6AndWildcard(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				echoAll(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	svc := &maps.Service{ID: 7, Name: "v6", Subsets: []maps.Subset{{Name: "v1", Weight: 1,
		Endpoints: []maps.Endpoint{{ID: 0, Addr: ln.Addr().(*net.TCPAddr).AddrPort()}}}}}
	src, err := NewStaticSource([]*maps.Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Source: src})
	fe := deadPort(t) // a free port, for the wildcard
	s := Service{ID: 7, Name: "v6", Frontend: netip.AddrPortFrom(netip.IPv4Unspecified(), fe.Port())}
	if err := p.Listen(s); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	for _, addr := range []string{fe.String(), netip.AddrPortFrom(netip.IPv6Loopback(), fe.Port()).String()} {
		c := dial(t, addr)
		c.Write([]byte("six"))
		c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "six" {
			t.Fatalf("via %s: read %q, %v; want six", addr, got, err)
		}
	}
}

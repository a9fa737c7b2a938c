package test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
	tsmaps "github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/userspace"
)

var proxyConfig = strings.Replace(echoConfig, "mode: lookup", "mode: proxy", 1)

// startProxy runs the userspace proxy in the test's namespace for the
// proxy-mode services applied there, reading the pinned tables.
func startProxy(t *testing.T, env *testenv.Env, tg *loader.Target) *userspace.Proxy {
	t.Helper()
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	svcs, err := set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, env, userspace.NewKernelSource(set), svcs)
}

func serve(t *testing.T, env *testenv.Env, src userspace.Source, svcs []*tsmaps.Service) *userspace.Proxy {
	t.Helper()
	p := userspace.New(userspace.Options{Source: src, InNamespace: env.NS.Do, DialTimeout: time.Second})
	for _, svc := range svcs {
		if svc.Mode != tsmaps.ModeProxy {
			continue
		}
		if err := p.Listen(userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p
}

// The proxy splits by the kernel's table, exactly, and follows set-weight
// at the next connection; sockops counts its connections and bytes.
func TestProxySplitsExactly(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	echoPair(env)
	tg := env.Target()
	apply(t, tg, proxyConfig)
	startProxy(t, env, tg)

	if got := env.Count(frontend, 1000); !maps.Equal(got, map[string]int{"one": 800, "two": 200}) {
		t.Fatalf("1000 connections: %v, want 800/200", got)
	}
	setWeights(t, tg, 0, 100)
	if got := env.Count(frontend, 100); !maps.Equal(got, map[string]int{"two": 100}) {
		t.Fatalf("after set-weight v1=0 v2=100: %v, want all 100 to two", got)
	}
	eventually(t, tg, counters(0, 0, 800, 300))
	s := status(t, tg)
	if s.Mode != "proxy" || s.Subsets[0].Connections != 800 || s.Subsets[1].Connections != 300 {
		t.Fatalf("status: mode %s, connections %d/%d; want proxy, 800/300", s.Mode, s.Subsets[0].Connections, s.Subsets[1].Connections)
	}
}

// Without BPF the proxy builds the table in Go from the config and picks
// in the same order as the kernel.
func TestProxyWithoutBPFMatchesKernel(t *testing.T) {
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig) // lookup mode: the kernel splits 127.0.0.100:9000
	var kernel []string
	for range 20 {
		who, err := env.Ask(frontend)
		if err != nil {
			t.Fatal(err)
		}
		kernel = append(kernel, who)
	}

	cfg := parse(t, strings.Replace(strings.Replace(echoConfig, "mode: lookup", "mode: auto", 1), "127.0.0.100:9000", "127.0.0.1:9000", 1))
	svcs, err := loader.StaticServices(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	if svcs[0].Mode != tsmaps.ModeProxy || svcs[0].Reason != "auto: no BPF: test" {
		t.Fatalf("static service: mode %v reason %q", svcs[0].Mode, svcs[0].Reason)
	}
	src, err := userspace.NewStaticSource(svcs)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, env, src, svcs)
	var proxied []string
	for range 20 {
		who, err := env.Ask("127.0.0.1:9000")
		if err != nil {
			t.Fatal(err)
		}
		proxied = append(proxied, who)
	}
	if !slices.Equal(kernel, proxied) {
		t.Fatalf("order differs:\nkernel %v\nproxy  %v", kernel, proxied)
	}
	if got := env.Count("127.0.0.1:9000", 980); !maps.Equal(got, map[string]int{"one": 784, "two": 196}) {
		t.Fatalf("980 more connections: %v, want 784/196", got)
	}

	if _, err := loader.StaticServices(parse(t, echoConfig), "not root"); !errors.Is(err, loader.ErrNeedsBPF) || !strings.Contains(err.Error(), "services[0].mode: mode lookup needs BPF (not root)") {
		t.Fatalf("lookup mode without BPF: %v", err)
	}
}

// stream writes n bytes of a seeded pseudo-random stream to w and returns
// its CRC-32C.
func stream(w io.Writer, seed uint64, n int64) (uint32, error) {
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 256<<10)
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		rng.Read(chunk)
		sum.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return 0, err
		}
		n -= int64(len(chunk))
	}
	return sum.Sum32(), nil
}

// drain reads r to its end and returns the byte count and CRC-32C.
func drain(r io.Reader) (int64, uint32, error) {
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.Copy(sum, r)
	return n, sum.Sum32(), err
}

type transfer struct {
	n         int64
	got, sent uint32
	err       error
}

// exchange sends n bytes from seed each way over c, half-closes, reads
// the peer's stream to its end.
func exchange(c *net.TCPConn, seed uint64, n int64) transfer {
	sent := make(chan transfer, 1)
	go func() {
		sum, err := stream(c, seed, n)
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- transfer{sent: sum, err: err}
	}()
	got, sum, err := drain(c)
	s := <-sent
	return transfer{n: got, got: sum, sent: s.sent, err: errors.Join(err, s.err)}
}

// 1 GiB each way through the proxy arrives intact, in order, and the
// accounting counts exactly 1 GiB in and out.
func TestProxyTransfers1GiB(t *testing.T) {
	const size = 1 << 30
	env := testenv.New(t)
	env.Join()
	ln := env.Listen("127.0.0.1:9001")
	backend := make(chan transfer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			backend <- transfer{err: err}
			return
		}
		defer c.Close()
		backend <- exchange(c.(*net.TCPConn), 2, size)
	}()
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, strings.Replace(proxyConfig, "{subset: v2, weight: 20}", "{subset: v2, weight: 0}", 1))
	startProxy(t, env, tg)

	c, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	client := exchange(c.(*net.TCPConn), 1, size)
	elapsed := time.Since(start)
	server := <-backend
	if client.err != nil || server.err != nil {
		t.Fatalf("client: %v; backend: %v", client.err, server.err)
	}
	if server.n != size || server.got != client.sent {
		t.Fatalf("towards the backend: %d bytes crc %08x, sent %d bytes crc %08x", server.n, server.got, size, client.sent)
	}
	if client.n != size || client.got != server.sent {
		t.Fatalf("towards the client: %d bytes crc %08x, sent %d bytes crc %08x", client.n, client.got, size, server.sent)
	}
	t.Logf("1 GiB each way in %v: %.2f Gbit/s per direction", elapsed.Round(time.Millisecond), float64(size)*8/elapsed.Seconds()/1e9)
	c.Close()
	eventually(t, tg, func(s loader.ServiceStatus) error {
		got := s.Subsets[0].Endpoints[0].Counters
		if want := (loader.Counters{Connections: 1, BytesIn: size, BytesOut: size}); got != want {
			return fmt.Errorf("v1 counters %+v, want %+v", got, want)
		}
		return nil
	})
}

// resetServer accepts connections on addr and resets each at once.
func resetServer(t *testing.T, env *testenv.Env, addr string) {
	t.Helper()
	ln := env.Listen(addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}

const failingConfig = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: proxy
  subsets:
    v1: {endpoints: [127.0.0.1:9001, 127.0.0.1:9011]} # 9011: nothing listens
    v2: {endpoints: [127.0.0.1:9003]}                 # resets every connection
    v3: {endpoints: [127.0.0.1:9012]}                 # nothing listens
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 0}
  - {subset: v3, weight: 0}
`

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// The proxy skips an endpoint that refuses, passes a backend's reset on to
// its client, refuses with a reset when every try fails, and stops without
// leaving a goroutine or a file descriptor behind.
func TestProxySurvivesFailuresAndStopsCleanly(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	env.Echo("127.0.0.1:9001", "one")
	resetServer(t, env, "127.0.0.1:9003")
	tg := env.Target()
	apply(t, tg, failingConfig)
	set, err := tg.Maps()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	svcs, err := set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	status(t, tg) // cilium/ebpf keeps the kernel's BTF open once it used it
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	p := serve(t, env, userspace.NewKernelSource(set), svcs)

	weights := func(v1, v2, v3 uint64) {
		t.Helper()
		if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: v2}, {Subset: "v3", Weight: v3}}); err != nil {
			t.Fatal(err)
		}
	}
	// v1's turns alternate between 9001 and the dead 9011: every other
	// connection needs a second try, and all succeed.
	if got := env.Count(frontend, 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("v1 with a dead endpoint: %v, want 10 answers from one", got)
	}
	weights(0, 1, 0)
	for i := range 3 {
		if who, err := env.Ask(frontend); err == nil {
			t.Fatalf("connection %d to a resetting backend answered %q", i, who)
		}
	}
	// A reset can come before the proxy's connect() returns: that dial
	// fails and counts as refused. Count v3's refusals alone.
	refusedBefore := status(t, tg).Refused
	weights(0, 0, 1)
	for i := range 3 {
		if who, err := env.Ask(frontend); err == nil || !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d with no live endpoint: %q %v, want a reset", i, who, err)
		}
	}
	if s := status(t, tg); s.Refused-refusedBefore != 3 {
		t.Fatalf("status refused %d more, want 3", s.Refused-refusedBefore)
	}
	weights(1, 0, 0)
	if got := env.Count(frontend, 4); !maps.Equal(got, map[string]int{"one": 4}) {
		t.Fatalf("after the failures: %v, want 4 answers from one", got)
	}

	// An idle connection outlives a short grace period and is closed.
	idle, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.Ask(idle, "hi"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with an open connection: %v, want the grace period to run out", err)
	}
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatalf("idle connection still open after shutdown (read %d bytes)", n)
	}
	idle.Close()
	if _, err := env.Dial(frontend); err == nil {
		t.Fatal("the frontend still accepts connections after shutdown")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// Go keeps splice's pipes in a sync.Pool; a GC frees idle ones.
		runtime.GC()
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f == fds {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after shutdown: %d goroutines (before %d), %d fds (before %d)", g, goroutines, f, fds)
		}
	}
}

// A backend that stops reading holds the client back through the socket
// buffers: the proxy does not buffer in memory.
func TestProxySlowReaderIsBounded(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	ln := env.Listen("127.0.0.1:9001")
	stalled := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			stalled <- c // never read
		}
	}()
	env.Echo("127.0.0.1:9002", "two")
	tg := env.Target()
	apply(t, tg, strings.Replace(proxyConfig, "{subset: v2, weight: 20}", "{subset: v2, weight: 0}", 1))
	startProxy(t, env, tg)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := env.Dial(frontend)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		if s := <-stalled; s != nil {
			s.Close()
		}
	}()
	chunk := make([]byte, 1<<20)
	var written int64
	for written < 1<<30 {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(chunk)
		written += int64(n)
		if err != nil {
			break
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("the client could write %d MiB before blocking; heap grew %d KiB", written>>20, growth>>10)
	if written >= 64<<20 {
		t.Fatalf("the client wrote %d MiB to a backend that reads nothing: something buffers without bound", written>>20)
	}
	if growth > 8<<20 {
		t.Fatalf("heap grew by %d MiB while the backend stalled", growth>>20)
	}
}

// Weight flips as fast as the maps take them never fail a connection: the
// proxy may read a table version that is swapped out and freed before it
// opens it, and must then read the version in force.
func TestProxySurvivesWeightFlips(t *testing.T) {
	const flips = 200
	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	apply(t, tg, proxyConfig)
	startProxy(t, env, tg)

	done := make(chan error, 1)
	go func() {
		for n := range flips {
			v1, v2 := uint64(80), uint64(20)
			if n%2 == 0 {
				v1, v2 = 20, 80
			}
			if _, err := tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: v2}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for n := 0; ; n++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d connections during %d flips, none failed", n, flips)
			return
		default:
		}
		if _, err := env.Ask(frontend); err != nil {
			t.Fatalf("connection %d during weight flips: %v", n, err)
		}
	}
}

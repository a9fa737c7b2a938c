package userspace

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A reset must reach the other peer even when the proxy has nothing to
// read from or write to the socket it came on: its direction ended, or
// waits on the other peer. These are the cases where only epoll's error
// report tells the proxy.

const tcpClose = 7 // the kernel's TCP_CLOSE: what a reset leaves

// waitReset waits until c's socket was reset (TCP state CLOSE), and fails
// the test if it was not within 5 s.
func waitReset(t *testing.T, c *net.TCPConn, who string) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var state uint8
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		raw.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				state = ti.State
			}
		})
		if state == tcpClose {
			return
		}
	}
	t.Fatalf("%s's socket in TCP state %d 5 s after the other peer's reset, want %d (reset)", who, state, tcpClose)
}

// liveConns is how many connections the proxy's workers hold.
func liveConns(p *Proxy) int {
	n := 0
	for _, w := range p.workers {
		got := make(chan int, 1)
		w.post(func(w *worker) { got <- w.live })
		n += <-got
	}
	return n
}

// waitNoConns waits until the proxy holds no connection.
func waitNoConns(t *testing.T, p *Proxy) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); liveConns(p) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("proxy holds %d connections 5 s after a reset, want 0", liveConns(p))
		}
	}
}

// clientResets resets the client's connection c and checks that the
// reset reached the backend's end b and the proxy let the connection go.
func clientResets(t *testing.T, p *Proxy, c, b *net.TCPConn) {
	t.Helper()
	c.SetLinger(0)
	c.Close()
	waitReset(t, b, "backend")
	waitNoConns(t, p)
}

// The client half-closes, the backend reads to the end and says nothing:
// the client's reset then comes on a direction that has ended.
func TestResetFromClientAfterHalfClose(t *testing.T) {
	conns := make(chan *net.TCPConn, 1)
	release := make(chan struct{})
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		if got, err := io.ReadAll(c); err != nil || string(got) != "request" {
			t.Errorf("backend read %q, %v; want the request and EOF", got, err)
		}
		conns <- c
		<-release
	}))
	defer close(release)
	c := dial(t, fe)
	c.Write([]byte("request"))
	c.CloseWrite()
	clientResets(t, p, c, <-conns)
}

// The backend reads nothing, so the proxy holds bytes for it and reads no
// more from the client: the client's reset comes on a direction that
// waits on the backend.
func TestResetFromClientWhileBackendStalls(t *testing.T) {
	conns := make(chan *net.TCPConn, 1)
	release := make(chan struct{})
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		conns <- c
		<-release
	}))
	defer close(release)
	c := dial(t, fe)
	chunk := make([]byte, 1<<20)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	for {
		if _, err := c.Write(chunk); err != nil {
			break // every buffer on the way is full
		}
	}
	clientResets(t, p, c, <-conns)
}

// The backend answers and half-closes, the client reads it all and says
// nothing: the backend's reset comes on a direction that has ended.
func TestResetFromBackendAfterHalfClose(t *testing.T) {
	reset := make(chan struct{})
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		c.Write([]byte("answer"))
		c.CloseWrite()
		<-reset
		c.SetLinger(0) // the deferred Close resets
	}))
	c := dial(t, fe)
	if got, err := io.ReadAll(c); err != nil || string(got) != "answer" {
		t.Fatalf("client read %q, %v; want the answer and EOF", got, err)
	}
	close(reset)
	waitReset(t, c, "client")
	waitNoConns(t, p)
}

// The client reads nothing, so the proxy holds bytes for it and reads no
// more from the backend: the backend's reset comes on a direction that
// waits on the client.
func TestResetFromBackendWhileClientStalls(t *testing.T) {
	full := make(chan struct{})
	p, _, fe := serveProxy(t, Options{}, backend(t, func(c *net.TCPConn) {
		chunk := make([]byte, 1<<20)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		for {
			if _, err := c.Write(chunk); err != nil {
				break // every buffer on the way is full
			}
		}
		close(full)
		c.SetLinger(0) // the deferred Close resets
	}))
	c := dial(t, fe)
	<-full
	waitReset(t, c, "client")
	waitNoConns(t, p)
}

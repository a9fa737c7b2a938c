package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/loader/listener"
)

// parsed runs tcp-echo with args and returns what it would serve, without
// listening.
func parsed(t *testing.T, args ...string) (addrs []string, prefix string, err error) {
	t.Helper()
	served := false
	serveFunc = func(_ context.Context, a []string, p string, _ io.Writer) error {
		served, addrs, prefix = true, a, p
		return nil
	}
	t.Cleanup(func() { serveFunc = serve })
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), append([]string{"tcp-echo"}, args...), &stdout, &stderr)
	if err == nil && !served {
		t.Fatalf("tcp-echo %s: neither served nor failed (stdout %q, stderr %q)", strings.Join(args, " "), stdout.String(), stderr.String())
	}
	return addrs, prefix, err
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		args   string
		addrs  []string
		prefix string
	}{
		// Our own form, as before.
		{"one", []string{"127.0.0.1:9000"}, "one"},
		{"-l 127.0.0.1:9001 one", []string{"127.0.0.1:9001"}, "one"},
		{"--listen 127.0.0.1:9001 --listen [::1]:9002 --listen=10.0.0.1:9003 two", []string{"127.0.0.1:9001", "[::1]:9002", "10.0.0.1:9003"}, "two"},
		{"-l :9000 9000", []string{":9000"}, "9000"},
		{"9000", []string{"127.0.0.1:9000"}, "9000"}, // one argument is always PREFIX
		// Istio's form: every port on all addresses.
		{"9000 hello", []string{":9000"}, "hello"},
		{"9000,9001,9002 one", []string{":9000", ":9001", ":9002"}, "one"},
		{"1,65535 x", []string{":1", ":65535"}, "x"},
		{"09000 one", []string{":9000"}, "one"},
		{"-- 9000 -one", []string{":9000"}, "-one"},
	} {
		addrs, prefix, err := parsed(t, strings.Fields(tc.args)...)
		if err != nil || !slices.Equal(addrs, tc.addrs) || prefix != tc.prefix {
			t.Errorf("tcp-echo %s: listen on %q with prefix %q, %v; want %q, %q", tc.args, addrs, prefix, err, tc.addrs, tc.prefix)
		}
	}
}

func TestArgErrors(t *testing.T) {
	const both = "give either -l ADDR or Istio's PORTS PREFIX, not both"
	for _, tc := range []struct{ args, want string }{
		{"-l 127.0.0.1:9001 9000 one", both},
		{"--listen=127.0.0.1:9001 9000,9001 one", both},
		{"9000,9001 one -l 127.0.0.1:9001", both},
		{"9000 one --listen=127.0.0.1:9001", both},
		{"one -l 127.0.0.1:9001", `flag -l after PREFIX "one": flags go first (tcp-echo -l ADDR PREFIX)`},
		{"90x1 one", `port "90x1" in "90x1": not a number 1-65535`},
		{"9000,90x1 one", `port "90x1" in "9000,90x1": not a number 1-65535`},
		{"9000,90x1,x one", `port "90x1" in "9000,90x1,x": not a number 1-65535`},
		{"0 one", `port "0" in "0": not a number 1-65535`},
		{"65536 one", `port "65536" in "65536": not a number 1-65535`},
		{"-1 one", "flag provided but not defined: -1"},
		{"-- -1 one", `port "-1" in "-1": not a number 1-65535`},
		{"+80 one", `port "+80" in "+80": not a number 1-65535`},
		{"http one", `port "http" in "http": not a number 1-65535`},
		{"9000, one", `port "" in "9000,": not a number 1-65535`},
		{"9000,,9001 one", `port "" in "9000,,9001": not a number 1-65535`},
		{":9000 one", `port ":9000" in ":9000": not a number 1-65535`},
		{"9000,9001,9000 one", `port "9000" in "9000,9001,9000": given twice`},
		{"", "want the reply PREFIX (e.g. tcp-echo -l 127.0.0.1:9001 one) or Istio's PORTS PREFIX (e.g. tcp-echo 9000,9001 one)"},
		{"9000 one two", "3 arguments, want PREFIX (e.g. tcp-echo -l 127.0.0.1:9001 one) or Istio's PORTS PREFIX (e.g. tcp-echo 9000,9001 one)"},
	} {
		if _, _, err := parsed(t, strings.Fields(tc.args)...); err == nil || err.Error() != tc.want {
			t.Errorf("tcp-echo %s: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpShowsBothForms(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"tcp-echo", "--help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"tcp-echo [-l ADDR]... PREFIX",
		"tcp-echo PORTS PREFIX",
		"tcp-echo 9000,9001,9002 one",
		"tcp-echo -l 127.0.0.1:9001",
		"--listen value, -l value",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stdout.String())
		}
	}
}

// started is a running tcp-echo.
type started struct {
	addrs  []string // from its "listening on" lines
	cancel context.CancelFunc
	done   chan error
}

// start runs tcp-echo with args until the test ends, and waits until it
// listens on want addresses; it returns nil if tcp-echo failed with "address
// already in use" (a free port taken meanwhile), for the caller to retry.
func start(t *testing.T, want int, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	s := &started{cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, append([]string{"tcp-echo"}, args...), w, io.Discard)
		w.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for len(s.addrs) < want {
		select {
		case line, ok := <-lines:
			if !ok {
				cancel()
				err := <-s.done
				if errors.Is(err, syscall.EADDRINUSE) {
					return nil
				}
				t.Fatalf("tcp-echo %s: %v", strings.Join(args, " "), err)
			}
			_, addr, found := strings.Cut(line, " listening on ")
			if !found || !strings.HasPrefix(line, "tcp-echo "+args[len(args)-1]+" ") {
				t.Fatalf("tcp-echo printed %q, want \"tcp-echo PREFIX listening on ADDR\"", line)
			}
			s.addrs = append(s.addrs, addr)
		case <-time.After(10 * time.Second):
			t.Fatalf("tcp-echo %s: not listening after 10s", strings.Join(args, " "))
		}
	}
	go func() {
		for range lines {
		}
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop stops tcp-echo and checks that it returned nil.
func (s *started) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("tcp-echo after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("tcp-echo did not return within 10s of its context ending")
	}
}

// ask dials addr and checks the answer to one line.
func ask(t *testing.T, addr, prefix string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := echo.Ask(c, "hello "+addr); err != nil || got != prefix+" hello "+addr {
		t.Errorf("answer from %s = %q, %v; want %q", addr, got, err, prefix+" hello "+addr)
	}
}

// freePorts returns n ports that are free on the IPv4 and IPv6 wildcards now.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := listener.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestIstioForm(t *testing.T) {
	var (
		s     *started
		ports []string
	)
	for range 5 {
		ports = freePorts(t, 3)
		if s = start(t, 3, strings.Join(ports, ","), "one"); s != nil {
			break
		}
	}
	if s == nil {
		t.Fatal("no free ports after 5 tries")
	}
	v6 := hasIPv6Loopback()
	for i, port := range ports {
		// Like Istio's net.Listen("tcp", ":"+port): the wildcard, dual-stack.
		if want := []string{"[::]:" + port, "0.0.0.0:" + port}; !slices.Contains(want, s.addrs[i]) {
			t.Errorf("listening on %s, want one of %q", s.addrs[i], want)
		}
		ask(t, "127.0.0.1:"+port, "one")
		if v6 {
			ask(t, "[::1]:"+port, "one")
		}
	}
	s.stop(t)
	for _, port := range ports {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			t.Errorf("127.0.0.1:%s still takes connections after tcp-echo stopped", port)
		}
	}
}

func TestListenForm(t *testing.T) {
	s := start(t, 2, "-l", "127.0.0.1:0", "-l", "127.0.0.1:0", "two")
	if s == nil {
		t.Fatal("port 0 in use?")
	}
	for _, addr := range s.addrs {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("listening on %s, want 127.0.0.1:PORT", addr)
		}
		ask(t, addr, "two")
	}
}

func TestListenError(t *testing.T) {
	taken, err := listener.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var stdout bytes.Buffer
	err = run(context.Background(), []string{"tcp-echo", "-l", "127.0.0.1:0", "-l", taken.Addr().String(), "one"}, &stdout, io.Discard)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "listen: listen tcp "+taken.Addr().String()+": ") {
		t.Errorf("listen on a taken address: %v, want listen: ... address already in use", err)
	}
}

// TestNotMPTCP checks that the listeners are plain TCP whatever GODEBUG
// says: the kernel refuses MPTCP sockets in a SOCKMAP.
func TestNotMPTCP(t *testing.T) {
	t.Setenv("GODEBUG", "multipathtcp=1")
	lns, err := listen([]string{":0", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		defer ln.Close()
		raw, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var proto, v6only int
		var serr error
		err = raw.Control(func(fd uintptr) {
			proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
			if serr == nil && ln.Addr().(*net.TCPAddr).IP.To4() == nil {
				v6only, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
			}
		})
		if err != nil || serr != nil {
			t.Fatalf("getsockopt on %s: %v, %v", ln.Addr(), err, serr)
		}
		if proto != unix.IPPROTO_TCP {
			t.Errorf("%s: protocol %d, want IPPROTO_TCP (%d)", ln.Addr(), proto, unix.IPPROTO_TCP)
		}
		if v6only != 0 {
			t.Errorf("%s: IPV6_V6ONLY, want dual-stack", ln.Addr())
		}
	}
}

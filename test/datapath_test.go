package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// buildEcho builds the tcp-echo backend into the test's directory.
func buildEcho(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcp-echo")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tcpshift/tcpshift/cmd/tcp-echo").CombinedOutput()
	if err != nil {
		t.Fatalf("build tcp-echo: %v\n%s", err, out)
	}
	return bin
}

// startEcho runs the tcp-echo binary on addr inside env's namespace and
// returns once it answers there.
func startEcho(t *testing.T, env *testenv.Env, bin, addr, prefix string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "-l", addr, prefix)
	if err := env.NS.Do(cmd.Start); err != nil {
		t.Fatalf("start tcp-echo: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	env.WaitListening(addr)
	return cmd
}

// A backend killed and started again serves the very next connection: the
// kernel registers its new listener when it calls listen(), with no apply
// and no daemon. A client loop runs all along; every connection it starts
// after the new process answers directly, and ends before the next kill,
// must succeed.
func TestBackendRestartServesNextConnection(t *testing.T) {
	env := testenv.New(t)
	env.Join() // the backend processes listen inside the cgroup sockops watches
	bin := buildEcho(t)
	env.Echo("127.0.0.1:9002", "two")
	v1 := startEcho(t, env, bin, "127.0.0.1:9001", "one")
	tg := env.Target()
	apply(t, tg, echoConfig)
	setWeights(t, tg, 1, 1)

	var (
		mu     sync.Mutex
		epoch  int  // bumped at every kill and every start
		up     bool // v1 answers directly
		stop   = make(chan struct{})
		done   = make(chan struct{})
		failed []string
		served = map[string]int{}
	)
	state := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		return epoch, up
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			e0, up0 := state()
			who, err := env.Ask(frontend)
			e1, _ := state()
			mu.Lock()
			if err == nil {
				served[who]++
			} else if up0 && e0 == e1 {
				failed = append(failed, fmt.Sprintf("epoch %d: %v", e0, err))
			}
			mu.Unlock()
		}
	}()

	for i := range 50 {
		mu.Lock()
		epoch++
		up = false
		mu.Unlock()
		v1.Process.Kill()
		v1.Wait()
		cmd := exec.Command(bin, "-l", "127.0.0.1:9001", "one")
		if err := env.NS.Do(cmd.Start); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		v1 = cmd
		env.WaitListening("127.0.0.1:9001")
		mu.Lock()
		epoch++
		up = true
		mu.Unlock()
		// Connections while it is up, from the loop and from here.
		for j := range 4 {
			if _, err := env.Ask(frontend); err != nil {
				t.Fatalf("restart %d, connection %d after the listener is up: %v", i, j, err)
			}
		}
	}
	close(stop)
	<-done
	v1.Process.Kill()
	v1.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d connections failed while v1 was up: %v", len(failed), failed[:min(len(failed), 5)])
	}
	if served["one"] == 0 || served["two"] == 0 {
		t.Fatalf("the client loop was served %v, want both backends", served)
	}
	t.Logf("client loop: %v served, 0 failed while up", served)
}

// sysctl writes a network sysctl inside env's namespace: /proc/sys/net
// belongs to the namespace of the thread that opens it.
func sysctl(t *testing.T, env *testenv.Env, name, value string) {
	t.Helper()
	err := env.NS.Do(func() error {
		return os.WriteFile("/proc/sys/net/"+strings.ReplaceAll(name, ".", "/"), []byte(value), 0)
	})
	if err != nil {
		t.Fatalf("sysctl net.%s=%s: %v", name, value, err)
	}
}

// tcpExt reads a TcpExt counter of env's namespace from /proc/net/netstat.
func tcpExt(t *testing.T, env *testenv.Env, name string) int {
	t.Helper()
	var value int = -1
	err := env.NS.Do(func() error {
		data, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for sc.Scan() {
			names := strings.Fields(sc.Text())
			if !sc.Scan() || len(names) == 0 || names[0] != "TcpExt:" {
				continue
			}
			values := strings.Fields(sc.Text())
			for i, n := range names {
				if n == name && i < len(values) {
					value, err = strconv.Atoi(values[i])
					return err
				}
			}
		}
		return fmt.Errorf("no TcpExt %s", name)
	})
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// With SYN cookies the listener keeps no state for a handshake, so the
// final ACK runs sk_lookup again: it must reach the endpoint that the SYN
// went to (another listener refuses the cookie) and not be counted twice.
func TestSynCookiesLookup(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	sysctl(t, env, "ipv4.tcp_syncookies", "2") // always send cookies
	echoPair(env)
	tg := env.Target()
	apply(t, tg, echoConfig)
	setWeights(t, tg, 50, 50)

	before := tcpExt(t, env, "SyncookiesRecv")
	if got := env.Count(frontend, 100); !maps.Equal(got, map[string]int{"one": 50, "two": 50}) {
		t.Fatalf("100 connections with SYN cookies went %v, want 50/50", got)
	}
	if recv := tcpExt(t, env, "SyncookiesRecv") - before; recv < 100 {
		t.Fatalf("the listeners took %d SYN cookies back, want at least 100: the test did not use cookies", recv)
	}
	eventually(t, tg, func(s loader.ServiceStatus) error {
		for i, sub := range s.Subsets {
			c := sub.Counters
			if c.Connections != 50 || c.Active != 0 || c.Failed != 0 || c.BytesIn != 50*askIn || c.BytesOut != 50*askOut {
				return fmt.Errorf("subset %d counters %+v, want 50 connections, 0 active, 300 B in, 500 B out", i, c)
			}
		}
		return nil
	})
}

// getpeername in connect mode is the frontend however many connections
// came and went since: what the client dialled lives with its socket.
func TestGetpeernameExactAtScale(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	remote.Echo("10.0.0.2:9002", "two")
	env.Join()
	tg := env.Target()
	apply(t, tg, connectConfig)

	var held []net.Conn
	for range 100 {
		c, err := env.Dial("10.96.0.10:9000")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// 70 000 more, each closed with a reset (no TIME_WAIT to run the
	// ephemeral ports out).
	err := env.NS.Do(func() error {
		for i := range 70000 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 96, 0, 10}, Port: 9000})
			if err == nil {
				err = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			}
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wrong := 0
	for i, c := range held {
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var sa unix.Sockaddr
		var gerr error
		raw.Control(func(fd uintptr) { sa, gerr = unix.Getpeername(int(fd)) })
		if gerr != nil {
			t.Fatalf("held connection %d: getpeername: %v", i, gerr)
		}
		in4, ok := sa.(*unix.SockaddrInet4)
		if !ok || in4.Addr != [4]byte{10, 96, 0, 10} || in4.Port != 9000 {
			wrong++
			if wrong <= 3 {
				t.Errorf("held connection %d: getpeername %+v, want 10.96.0.10:9000", i, sa)
			}
		}
	}
	if wrong > 0 {
		t.Fatalf("%d of 100 held connections show the wrong peer after 70 000 others", wrong)
	}
}

// accounting: false leaves the per-connection counting out; selection,
// weights and getpeername stay exact.
func TestAccountingOff(t *testing.T) {
	env := remotePair(t)
	echoPair(env)
	tg := env.Target()
	connect := strings.Replace(strings.TrimPrefix(connectConfig, "services:\n"), "name: tcp-echo", "name: tcp-echo-remote", 1)
	apply(t, tg, strings.ReplaceAll(echoConfig+connect, "  subsets:", "  accounting: false\n  subsets:"))

	for _, fe := range []string{frontend, "10.96.0.10:9000"} {
		if got := env.Count(fe, 100); !maps.Equal(got, map[string]int{"one": 80, "two": 20}) {
			t.Fatalf("%s: 100 connections went %v, want 80/20", fe, got)
		}
	}
	c, err := env.Dial("10.96.0.10:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "10.96.0.10:9000" {
		t.Fatalf("getpeername with accounting off: %s, want the frontend", got)
	}
	if _, err := tg.Load("tcp-echo", "v1"); err == nil || !strings.Contains(err.Error(), "accounting: false") {
		t.Fatalf("draining a service with accounting off: %v, want a refusal naming accounting: false", err)
	}
	st, err := tg.Status("")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Accounting {
			t.Fatalf("service %s: status says accounting on", s.Name)
		}
		for _, sub := range s.Subsets {
			if sub.Counters != (loader.Counters{}) {
				t.Fatalf("service %s subset %s: counters %+v with accounting off, want none", s.Name, sub.Name, sub.Counters)
			}
		}
	}
}

// echoReuseport serves tcp-echo on addr from a SO_REUSEPORT listener, which
// may share its port with listeners on other addresses of the port.
func echoReuseport(t *testing.T, env *testenv.Env, addr, prefix string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	var ln net.Listener
	err := env.NS.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		echo.Serve(ln, prefix)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln
}

// The kernel registers listeners by address, in the namespace tcpshift
// serves only: an exact listener takes the slot from a wildcard one, a
// wildcard never displaces an exact one, and a listener on the same address
// in another namespace is not taken.
func TestKernelRegistersListeners(t *testing.T) {
	env := testenv.New(t)
	env.Join()
	tg := env.Target()
	first := env.Echo("127.0.0.1:9001", "first")
	apply(t, tg, `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: lookup
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
`)
	ask := func(want string) {
		t.Helper()
		if got, err := env.Ask(frontend); err != nil || got != want {
			t.Fatalf("frontend answered %q (%v), want %q", got, err, want)
		}
	}
	ask("first")
	first.Close()

	// Only another namespace listens there now: refused.
	remote := env.Remote()
	remote.Echo("127.0.0.1:9001", "elsewhere")
	if got, err := env.Ask(frontend); err == nil {
		t.Fatalf("frontend answered %q from another namespace's listener", got)
	}

	wild := echoReuseport(t, env, "0.0.0.0:9001", "wildcard")
	ask("wildcard")
	exact := echoReuseport(t, env, "127.0.0.1:9001", "exact")
	ask("exact")
	// Another wildcard listener does not displace the exact one.
	wild2 := echoReuseport(t, env, "0.0.0.0:9001", "wildcard")
	ask("exact")
	for _, ln := range []net.Listener{exact, wild, wild2} {
		ln.Close()
	}
	env.Echo("[::]:9001", "dualstack")
	ask("dualstack")
}

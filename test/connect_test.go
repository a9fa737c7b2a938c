package test

import (
	"errors"
	"maps"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// The backends live in another namespace (a remote host over veth); the
// frontend 10.96.0.10:9000 exists nowhere: connect() is rewritten.
const connectConfig = `services:
- name: tcp-echo
  listen: 10.96.0.10:9000
  mode: connect
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
    v2: {endpoints: [10.0.0.2:9002]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`

func remotePair(t *testing.T) *testenv.Env {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	remote.Echo("10.0.0.2:9002", "two")
	remote.Echo("[fd00::2]:9001", "six-one")
	remote.Echo("[fd00::2]:9002", "six-two")
	env.Join()
	return env
}

func TestConnectSplitsExactly(t *testing.T) {
	env := remotePair(t)
	tg := env.Target()
	apply(t, tg, connectConfig)

	if got := env.Count("10.96.0.10:9000", 1000); !maps.Equal(got, map[string]int{"one": 800, "two": 200}) {
		t.Fatalf("1000 connections: %v, want 800/200", got)
	}
	c, err := env.Dial("10.96.0.10:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "10.96.0.10:9000" {
		t.Fatalf("getpeername: %s, want the frontend 10.96.0.10:9000", got)
	}
	s := status(t, tg)
	if s.Mode != "connect" || s.Subsets[0].Endpoints[0].Connections != 801 || s.Subsets[1].Endpoints[0].Connections != 200 {
		t.Fatalf("status %+v", s)
	}

	setWeights(t, tg, 0, 0)
	_, err = env.Dial("10.96.0.10:9000")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("all weights 0: %v, want connection refused", err)
	}

	removed, err := tg.Down()
	if err != nil || !removed {
		t.Fatalf("down: %v %v", removed, err)
	}
	if n := env.CgroupPrograms(); n != 0 {
		t.Fatalf("%d connect-time programs still attached after down", n)
	}
}

func TestConnectIPv6AndMapped(t *testing.T) {
	env := remotePair(t)
	tg := env.Target()
	apply(t, tg, `services:
- name: six
  listen: "[fd00:96::10]:9000"
  mode: connect
  subsets:
    v1: {endpoints: ["[fd00::2]:9001"]}
    v2: {endpoints: ["[fd00::2]:9002"]}
  route:
  - {subset: v1, weight: 1}
  - {subset: v2, weight: 1}
`+strings.TrimPrefix(connectConfig, "services:\n"))

	if got := env.Count("[fd00:96::10]:9000", 10); !maps.Equal(got, map[string]int{"six-one": 5, "six-two": 5}) {
		t.Fatalf("IPv6: %v, want 5/5", got)
	}
	// A dual-stack IPv6 socket dialling the IPv4 frontend as ::ffff:a.b.c.d
	// runs connect6 and lands on the IPv4 endpoints.
	got := map[string]int{}
	for range 5 {
		c := dialMapped(t, env, [4]byte{10, 96, 0, 10}, 9000)
		if ra := c.RemoteAddr().(*net.TCPAddr); !ra.IP.Equal(net.ParseIP("10.96.0.10")) || ra.Port != 9000 {
			t.Fatalf("getpeername on a mapped connection: %v", ra)
		}
		reply, err := echo.Ask(c, "x")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		who, _, _ := strings.Cut(reply, " ")
		got[who]++
	}
	if !maps.Equal(got, map[string]int{"one": 4, "two": 1}) {
		t.Fatalf("IPv4-mapped: %v, want 4/1", got)
	}
}

// A service applied in one namespace leaves connections from another
// namespace alone, even from a process in the same cgroup.
func TestConnectOnlyItsNamespace(t *testing.T) {
	env := remotePair(t)
	other := testenv.New(t)
	other.Echo("127.0.0.1:9000", "local")
	tg := env.Target()
	apply(t, tg, strings.Replace(connectConfig, "10.96.0.10:9000", "127.0.0.1:9000", 1))

	if got := other.Count("127.0.0.1:9000", 5); !maps.Equal(got, map[string]int{"local": 5}) {
		t.Fatalf("other namespace: %v, want its own listener 5 times", got)
	}
	if got := env.Count("127.0.0.1:9000", 5); !maps.Equal(got, map[string]int{"one": 4, "two": 1}) {
		t.Fatalf("service namespace: %v, want 4/1", got)
	}
}

// With affinity, one client process sticks to its endpoint; a weight of 0
// on that endpoint's subset breaks the affinity.
func TestConnectAffinity(t *testing.T) {
	env := remotePair(t)
	tg := env.Target()
	apply(t, tg, strings.Replace(connectConfig, "  mode: connect\n", "  mode: connect\n  affinity: {key: client, ttl: 30s}\n", 1))

	if got := env.Count("10.96.0.10:9000", 20); !maps.Equal(got, map[string]int{"one": 20}) {
		t.Fatalf("with affinity: %v, want all 20 to the first endpoint", got)
	}
	setWeights(t, tg, 0, 1)
	if got := env.Count("10.96.0.10:9000", 5); !maps.Equal(got, map[string]int{"two": 5}) {
		t.Fatalf("after v1=0: %v, want the affinity dropped and all 5 to two", got)
	}
	if s := status(t, tg); s.Affinity != "30s" {
		t.Fatalf("status affinity %q", s.Affinity)
	}
}

// mode: auto picks lookup for local listeners; otherwise connect, or proxy
// when other hosts can reach the frontend; and says why.
func TestAutoMode(t *testing.T) {
	env := testenv.New(t)
	remote := env.Remote()
	remote.Echo("10.0.0.2:9001", "one")
	env.Join()
	env.Echo("127.0.0.1:9001", "local-one")
	tg := env.Target()
	apply(t, tg, `services:
- name: local
  listen: 127.0.0.100:9000
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
  route:
  - {subset: v1, weight: 1}
- name: remote
  listen: 10.96.0.10:9000
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
  route:
  - {subset: v1, weight: 1}
- name: reachable
  listen: 10.0.0.1:9000
  subsets:
    v1: {endpoints: [10.0.0.2:9001]}
  route:
  - {subset: v1, weight: 1}
`)
	st, err := tg.Status("")
	if err != nil {
		t.Fatal(err)
	}
	local, reachable, remoteSvc := st.Services[0], st.Services[1], st.Services[2]
	if local.Mode != "lookup" || !strings.Contains(local.Reason, "every endpoint is a listener") {
		t.Fatalf("local service: mode %s (%s)", local.Mode, local.Reason)
	}
	if remoteSvc.Mode != "connect" || !strings.Contains(remoteSvc.Reason, "10.0.0.2:9001") {
		t.Fatalf("remote service: mode %s (%s)", remoteSvc.Mode, remoteSvc.Reason)
	}
	if reachable.Mode != "proxy" || !strings.Contains(reachable.Reason, "other hosts can reach 10.0.0.1 (it is an address of here)") || !strings.Contains(reachable.Reason, "10.0.0.2:9001") {
		t.Fatalf("service on an address other hosts reach: mode %s (%s)", reachable.Mode, reachable.Reason)
	}
	// The remote host itself gets served, through the proxy.
	startProxy(t, env, tg)
	if got := remote.Count("10.0.0.1:9000", 2); !maps.Equal(got, map[string]int{"one": 2}) {
		t.Fatalf("remote client through the proxy: %v", got)
	}
	if got := env.Count("127.0.0.100:9000", 2); !maps.Equal(got, map[string]int{"local-one": 2}) {
		t.Fatalf("local: %v", got)
	}
	if got := env.Count("10.96.0.10:9000", 2); !maps.Equal(got, map[string]int{"one": 2}) {
		t.Fatalf("remote: %v", got)
	}
}

// dialMapped connects a dual-stack AF_INET6 socket to ::ffff:ip:port (Go's
// net package would make that an IPv4 socket).
func dialMapped(t *testing.T, env *testenv.Env, ip [4]byte, port int) net.Conn {
	t.Helper()
	var fd int
	err := env.NS.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[10:], []byte{0xff, 0xff})
	copy(sa.Addr[12:], ip[:])
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		t.Fatalf("connect to ::ffff:%v: %v", ip, err)
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// Endpoints and services of connect mode (which have no sockets) can be
// changed and removed.
func TestConnectEndpointsChangeAndRemove(t *testing.T) {
	env := remotePair(t)
	tg := env.Target()
	apply(t, tg, connectConfig)
	if _, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(connectConfig, "10.0.0.2:9002", "10.0.0.2:9001", 1))), loader.ApplyOptions{}); err != nil {
		t.Fatalf("change an endpoint: %v", err)
	}
	if got := env.Count("10.96.0.10:9000", 5); !maps.Equal(got, map[string]int{"one": 5}) {
		t.Fatalf("after changing v2's endpoint: %v", got)
	}
	// A file without the service removes it (an empty file is refused).
	changes, err := tg.Apply(loader.Fixed(parse(t, strings.Replace(connectConfig, "name: tcp-echo", "name: other", 1))), loader.ApplyOptions{})
	if err != nil || len(changes) != 2 || changes[0].Service != "other" || changes[0].Action != "added" ||
		changes[1].Service != "tcp-echo" || changes[1].Action != "removed" {
		t.Fatalf("remove the service: %+v %v", changes, err)
	}
}

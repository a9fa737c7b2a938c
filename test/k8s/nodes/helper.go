//go:build k8s

package nodes

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/internal/echo"
)

// helperTimeout bounds one connection and exchange of a pod's client.
const helperTimeout = 10 * time.Second

// runHelper is the test binary run as a pod's client (see Pod.Dial and
// Pod.AskN) or server (Pod.StartEchoBasic); it never runs tests.
func runHelper(mode string) int {
	addr := os.Getenv("TCPSHIFT_K8S_ADDR")
	switch mode {
	case "dial":
		return helpDial(addr)
	case "ask":
		n, err := strconv.Atoi(os.Getenv("TCPSHIFT_K8S_COUNT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "TCPSHIFT_K8S_COUNT:", err)
			return 2
		}
		return helpAsk(addr, n)
	case "connect":
		n, err := strconv.Atoi(os.Getenv("TCPSHIFT_K8S_COUNT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "TCPSHIFT_K8S_COUNT:", err)
			return 2
		}
		return helpConnect(addr, n)
	case "echo-basic":
		return serveEchoBasic()
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", helperEnv, mode)
	return 2
}

// helpDial connects and sends the socket (or the error) over fd 3.
func helpDial(addr string) int {
	c, err := net.DialTimeout("tcp", addr, helperTimeout)
	var msg []byte
	var rights []byte
	if err != nil {
		msg = []byte(err.Error())
	} else {
		f, ferr := c.(*net.TCPConn).File()
		if ferr != nil {
			fmt.Fprintln(os.Stderr, ferr)
			return 1
		}
		msg, rights = []byte("ok"), unix.UnixRights(int(f.Fd()))
	}
	if err := unix.Sendmsg(3, msg, rights, nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "send the socket:", err)
		return 1
	}
	return 0
}

// helpAsk makes n connections, one exchange each, and prints one JSON line
// per connection; it stops at the first error.
func helpAsk(addr string, n int) int {
	out := json.NewEncoder(os.Stdout)
	for range n {
		a, err := askOnce(addr)
		r := askResult{Answer: a}
		if err != nil {
			r.Error = err.Error()
		}
		out.Encode(r)
		if err != nil {
			return 0
		}
	}
	return 0
}

func askOnce(addr string) (Answer, error) {
	c, err := net.DialTimeout("tcp", addr, helperTimeout)
	if err != nil {
		return Answer{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(helperTimeout))
	var a Answer
	if a.Cgroup, err = ownCgroup(); err != nil {
		return a, err
	}
	if a.Peer, a.Local, err = socketNames(c.(*net.TCPConn)); err != nil {
		return a, err
	}
	reply, err := echo.Ask(c, "hello")
	if err != nil {
		return a, err
	}
	prefix, rest, ok := strings.Cut(reply, " ")
	if !ok || rest != "hello" {
		return a, fmt.Errorf("unexpected reply %q", reply)
	}
	a.Prefix = prefix
	return a, nil
}

// socketNames asks the kernel for the socket's peer (getpeername, which
// cgroup getpeername hooks may rewrite) and local address.
func socketNames(c *net.TCPConn) (peer, local netip.AddrPort, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer, local, err
	}
	var perr, lerr error
	var psa, lsa unix.Sockaddr
	raw.Control(func(fd uintptr) {
		psa, perr = unix.Getpeername(int(fd))
		lsa, lerr = unix.Getsockname(int(fd))
	})
	if perr != nil || lerr != nil {
		return peer, local, fmt.Errorf("getpeername: %v, getsockname: %v", perr, lerr)
	}
	return addrPort(psa), addrPort(lsa), nil
}

// addrPort converts an IPv4 or IPv6 sockaddr; a v4-mapped address comes out
// as plain IPv4.
func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// ownCgroup is the process's cgroup v2 path, relative to the hierarchy's root.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 line in /proc/self/cgroup: %q", b)
}

// helpConnect calls connect() n times on fresh sockets, whatever the
// outcome, and prints how many succeeded and how many failed: the connect
// hooks run for each, which is what a measurement of their cost needs.
func helpConnect(addr string, n int) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	ok, failed := 0, 0
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if unix.Connect(fd, sa) == nil {
			ok++
		} else {
			failed++
		}
		unix.Close(fd)
	}
	fmt.Printf("%d %d\n", ok, failed)
	return 0
}

// Package listener finds the local TCP listening socket that serves an
// endpoint address, and takes a duplicate of it (pidfd_getfd) so that the
// loader can put it into the SOCKMAP used by the sk_lookup program.
package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	// ErrNotListening means that no TCP socket listens on the address (nor on
	// a wildcard covering it) in the network namespace that was searched.
	ErrNotListening = errors.New("no listening socket")

	// ErrOtherNetns means that the listener for the address lives in a
	// different network namespace than the one tcpshift was pointed at;
	// tcpshift must run in (or be pointed with --netns at) that namespace.
	ErrOtherNetns = errors.New("listener in another network namespace")

	// ErrMPTCP means that the listener is an MPTCP socket (Go >= 1.24
	// net.Listen creates those by default). The kernel refuses MPTCP sockets
	// in a SOCKMAP, so the backend must be started with
	// GODEBUG=multipathtcp=0, or tcpshift must use mode connect or proxy.
	ErrMPTCP = errors.New("mptcp listener")

	// ErrPermission means that finding or duplicating the listener was
	// denied: tcpshift needs root (CAP_SYS_ADMIN to enter the namespace,
	// CAP_SYS_PTRACE for pidfd_getfd and /proc, CAP_NET_ADMIN).
	ErrPermission = errors.New("permission denied")

	// ErrNoOwner means that a listening socket exists but no process visible
	// in /proc holds it open, e.g. because tcpshift runs in a different pid
	// namespace than the backend.
	ErrNoOwner = errors.New("listening socket has no visible owner")
)

// Socket is a duplicate of a backend's listening socket.
type Socket struct {
	// File is our own duplicate of the socket (caller closes). It shares the
	// open file description, including O_NONBLOCK, with the owner's fd;
	// File.Fd does not change the blocking mode of a descriptor passed to
	// os.NewFile, so it is safe to use, but do not change the file flags.
	File   *os.File
	Addr   netip.AddrPort // the address the socket is bound to (may be 0.0.0.0:port / [::]:port)
	Family int            // unix.AF_INET or unix.AF_INET6
	V6Only bool           // IPV6_V6ONLY, for AF_INET6 sockets
	PID    int            // owner process
	Comm   string         // owner command name
	FD     int            // fd number in the owner process
}

// Owner describes the owner for messages: "pid 1234 (tcp-echo) fd 3".
func (s *Socket) Owner() string { return owner(s.PID, s.FD) }

// Close closes the duplicate.
func (s *Socket) Close() error { return s.File.Close() }

func owner(pid, fd int) string {
	return fmt.Sprintf("pid %d (%s) fd %d", pid, comm(pid), fd)
}

// Listen listens like net.Listen but never makes an MPTCP listener (which the
// kernel refuses in a SOCKMAP), whatever GODEBUG says.
func Listen(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), network, addr)
}

// errV6Only marks a [::]:port candidate that cannot take IPv4 connections.
var errV6Only = errors.New("socket is IPV6_V6ONLY")

// Find returns a duplicate of the TCP listening socket that accepts
// connections for addr in the network namespace ns (an open netns fd, e.g.
// from netns.GetFromPath). A socket bound exactly to addr is preferred over
// the wildcard of the same family; for an IPv4 addr, an IPv6 socket bound to
// [::ffff:a.b.c.d]:port or a dual-stack [::]:port socket also serves.
// Errors wrap ErrNotListening, ErrOtherNetns, ErrMPTCP, ErrPermission or
// ErrNoOwner.
func Find(ns netns.NsHandle, addr netip.AddrPort) (*Socket, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("invalid address %v", addr)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap().WithZone(""), addr.Port())
	nsIno, err := fdInode(int(ns))
	if err != nil {
		return nil, fmt.Errorf("network namespace handle %d for %s: %w", int(ns), addr, err)
	}

	var entries []entry
	err = inNetns(ns, func() error {
		var err error
		entries, err = readTables("/proc/thread-self/net")
		return err
	})
	if err != nil {
		if isPermission(err) {
			return nil, permissionError(addr, err)
		}
		return nil, fmt.Errorf("list tcp listeners for %s in net:[%d]: %w", addr, nsIno, err)
	}

	var (
		denied, unowned, v6only bool
		unownedInode            uint64
	)
	for _, c := range match(entries, addr) {
		var (
			sock  *Socket
			ferr  error
			found bool
		)
		d, err := scanOwners(c.inode, func(pid, fd int) bool {
			nfd, err := dupFD(pid, fd)
			if err != nil {
				if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EBADF) {
					return true // exited or closed meanwhile: try the next holder
				}
				found = true
				if isPermission(err) {
					ferr = permissionError(addr, err)
				} else {
					ferr = fmt.Errorf("duplicate the listener of %s from %s: %w", addr, owner(pid, fd), err)
				}
				return false
			}
			found = true
			sock, ferr = inspect(nfd, pid, fd, addr, nsIno, c)
			return false
		})
		denied = denied || d
		if err != nil {
			return nil, fmt.Errorf("scan /proc for the owner of %s: %w", addr, err)
		}
		switch {
		case !found:
			unowned, unownedInode = true, c.inode
		case errors.Is(ferr, errV6Only):
			v6only = true
		case ferr != nil:
			return nil, ferr
		default:
			return sock, nil
		}
	}

	switch {
	case unowned && denied:
		return nil, permissionError(addr, unix.EACCES)
	case unowned:
		return nil, fmt.Errorf("%s is served by socket:[%d] in net:[%d], but no process visible in /proc holds it; run tcpshift in the pid namespace of the backend: %w",
			addr, unownedInode, nsIno, ErrNoOwner)
	case v6only:
		return nil, notListening(addr, nsIno,
			fmt.Sprintf(" ([::]:%d is IPV6_V6ONLY and takes no IPv4 connections)", addr.Port()))
	}
	return nil, notListening(addr, nsIno, "")
}

func permissionError(addr netip.AddrPort, cause error) error {
	return fmt.Errorf("finding the listener of %s needs root (CAP_SYS_ADMIN, CAP_SYS_PTRACE and CAP_NET_ADMIN), run with sudo (%v): %w",
		addr, cause, ErrPermission)
}

// notListening builds the error for "nothing in nsIno serves addr", turning it
// into ErrOtherNetns when another network namespace has a listener for addr.
func notListening(addr netip.AddrPort, nsIno uint64, note string) error {
	if err := elsewhere(addr, nsIno); err != nil {
		return err
	}
	return fmt.Errorf("nothing listens on %s in network namespace net:[%d]%s; start the backend first, or run tcpshift in its network namespace (--netns): %w",
		addr, nsIno, note, ErrNotListening)
}

// elsewhere looks for a listener for addr in every other visible network
// namespace and returns an ErrOtherNetns error naming it, or nil.
func elsewhere(addr netip.AddrPort, skip uint64) error {
	for _, src := range netnsSources(skip) {
		entries, err := src.tables()
		if err != nil {
			continue
		}
		for _, c := range match(entries, addr) {
			pid, fd, ok := firstOwner(c.inode)
			if c.tier == tierDualStack && (!ok || isV6Only(pid, fd)) {
				continue
			}
			who := fmt.Sprintf("socket:[%d]", c.inode)
			if ok {
				who = owner(pid, fd)
			}
			return fmt.Errorf("%s is served by %s in another network namespace (net:[%d]); run tcpshift in that namespace (--netns): %w",
				addr, who, src.ino, ErrOtherNetns)
		}
	}
	return nil
}

// isV6Only reports whether fd of pid is an IPV6_V6ONLY socket (true if it
// cannot be checked).
func isV6Only(pid, fd int) bool {
	nfd, err := dupFD(pid, fd)
	if err != nil {
		return true
	}
	defer unix.Close(nfd)
	v, err := unix.GetsockoptInt(nfd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	return err != nil || v != 0
}

// inspect checks the duplicated fd nfd (fd of pid) and wraps it in a Socket.
// It closes nfd on error.
func inspect(nfd, pid, fd int, addr netip.AddrPort, nsIno uint64, c candidate) (s *Socket, err error) {
	defer func() {
		if err != nil {
			unix.Close(nfd)
		}
	}()
	who := owner(pid, fd)

	// The socket's own network namespace.
	if nsfd, err := unix.IoctlRetInt(nfd, unix.SIOCGSKNS); err == nil {
		ino, err := fdInode(nsfd)
		unix.Close(nsfd)
		if err == nil && ino != nsIno {
			return nil, fmt.Errorf("%s is served by %s in another network namespace (net:[%d]); run tcpshift in that namespace (--netns): %w",
				addr, who, ino, ErrOtherNetns)
		}
	} else if isPermission(err) {
		return nil, permissionError(addr, err)
	}

	proto, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("getsockopt SO_PROTOCOL on the listener of %s (%s): %w", addr, who, err)
	}
	switch proto {
	case unix.IPPROTO_TCP:
	case unix.IPPROTO_MPTCP:
		return nil, fmt.Errorf("%s is served by %s, an mptcp socket, which the kernel refuses in a sockmap (start the backend with GODEBUG=multipathtcp=0, or use mode: connect / proxy): %w",
			addr, who, ErrMPTCP)
	default:
		return nil, fmt.Errorf("%s is served by %s, which is not a tcp socket (protocol %d)", addr, who, proto)
	}
	typ, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("getsockopt SO_TYPE on the listener of %s (%s): %w", addr, who, err)
	}
	if typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("%s is served by %s, which is not a stream socket (type %d)", addr, who, typ)
	}
	acc, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("getsockopt SO_ACCEPTCONN on the listener of %s (%s): %w", addr, who, err)
	}
	if acc == 0 {
		return nil, fmt.Errorf("the socket of %s for %s stopped listening; restart it and try again: %w", who, addr, ErrNotListening)
	}
	family, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, fmt.Errorf("getsockopt SO_DOMAIN on the listener of %s (%s): %w", addr, who, err)
	}
	sa, err := unix.Getsockname(nfd)
	if err != nil {
		return nil, fmt.Errorf("getsockname on the listener of %s (%s): %w", addr, who, err)
	}
	s = &Socket{
		Addr:   sockaddrAddrPort(sa),
		Family: family,
		PID:    pid,
		Comm:   comm(pid),
		FD:     fd,
	}
	if family == unix.AF_INET6 {
		v, err := unix.GetsockoptInt(nfd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return nil, fmt.Errorf("getsockopt IPV6_V6ONLY on the listener of %s (%s): %w", addr, who, err)
		}
		s.V6Only = v != 0
		if s.V6Only && c.tier == tierDualStack {
			return nil, errV6Only
		}
	}
	s.File = os.NewFile(uintptr(nfd), "socket:["+strconv.FormatUint(c.inode, 10)+"]")
	return s, nil
}

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		return netip.AddrPortFrom(ip, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

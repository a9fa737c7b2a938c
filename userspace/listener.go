package userspace

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// listener is a frontend's listening socket, shared by every worker.
type listener struct {
	svc    Service
	fd     int
	shared *listener // a worker's view: the proxy's listener
	paused bool      // a worker's view: accept failed, retry later
}

// listen makes svc's listening socket as Go's net.Listen would (a wildcard
// address listens dual-stack, never MPTCP) and sets on it, once, what its
// connections inherit: TCP_NODELAY and keepalive.
func listen(svc Service, inNamespace func(func() error) error) (*listener, error) {
	ap := svc.Frontend
	family, sa := sockaddr(ap)
	if ap.Addr().IsUnspecified() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port())}
	}
	var fd int
	err := inNamespace(func() (err error) {
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := setupListener(fd, family, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &listener{svc: svc, fd: fd}, nil
}

func setupListener(fd, family int, sa unix.Sockaddr) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fmt.Errorf("set IPV6_V6ONLY: %w", err)
		}
	}
	if err := setNoDelay(fd); err != nil {
		return fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	if err := setKeepalive(fd); err != nil {
		return fmt.Errorf("set keepalive: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// The kernel caps the backlog at net.core.somaxconn.
	if err := unix.Listen(fd, 65535); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

func (l *listener) close() error { return unix.Close(l.fd) }

// zoneID is the interface index an IPv6 zone names.
func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

package sockdiag

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ProbeStorages checks, in the current network namespace, that a dump returns a socket's BPF socket
// storage: it makes a throwaway SK_STORAGE map and a loopback listener on 127.0.0.1:0, stores a value
// for the listener by its fd, and checks Walk returns it. nil when it works; otherwise the kernel's error, wrapped.
//
// The current namespace is the calling thread's (lo may be down). Only
// listening sockets are dumped, so the probe stays cheap on a busy host.
// A kernel that silently ignores the storage request (before 5.2) gives an
// error wrapping errors.ErrUnsupported.
func ProbeStorages() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("probe socket storage: current network namespace: %w", err)
	}
	defer ns.Close()

	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:      "sockdiag_probe",
		Type:      ebpf.SkStorage,
		KeySize:   4,
		ValueSize: 8,
		Flags:     unix.BPF_F_NO_PREALLOC,
		Key:       &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value:     &btf.Int{Name: "__u64", Size: 8},
	})
	if err != nil {
		return fmt.Errorf("probe socket storage: create sk_storage map: %w", err)
	}
	defer m.Close()

	fd, _, err := loopbackListener()
	if err != nil {
		return fmt.Errorf("probe socket storage: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return fmt.Errorf("probe socket storage: socket cookie: %w", err)
	}
	value := cookie ^ 0x7463707368696674
	if err := m.Put(int32(fd), value); err != nil {
		return fmt.Errorf("probe socket storage: store a value for the listener: %w", err)
	}

	var found *Socket
	_, err = walk(ns, m, 1<<stateListen, func(s *Socket) error {
		if s.Cookie == cookie {
			found = s
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return fmt.Errorf("probe socket storage: %w", err)
	}
	switch {
	case found == nil:
		return errors.New("probe socket storage: the dump does not list the probe listener")
	case found.Storage == nil:
		return fmt.Errorf("probe socket storage: the dump returns no socket storage: %w", errors.ErrUnsupported)
	case !bytes.Equal(found.Storage, native.AppendUint64(nil, value)):
		return fmt.Errorf("probe socket storage: the dump returns %x, stored %x", found.Storage, native.AppendUint64(nil, value))
	}
	return nil
}

// ProbeDestroy checks, in the current network namespace, that SOCK_DESTROY closes a loopback connection it
// makes for the purpose (the peer sees ECONNABORTED or ECONNRESET). nil when it works.
//
// The current namespace is the calling thread's; it needs lo up (with lo
// down the connect fails with ENETUNREACH).
func ProbeDestroy() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("probe sock_destroy: current network namespace: %w", err)
	}
	defer ns.Close()

	ln, server, err := loopbackListener()
	if err != nil {
		return fmt.Errorf("probe sock_destroy: %w", err)
	}
	defer unix.Close(ln)
	client, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe sock_destroy: socket: %w", err)
	}
	defer unix.Close(client)
	if err := unix.Connect(client, &unix.SockaddrInet4{Addr: server.Addr().As4(), Port: int(server.Port())}); err != nil {
		return fmt.Errorf("probe sock_destroy: connect to %s: %w", server, err)
	}
	peer, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("probe sock_destroy: accept: %w", err)
	}
	defer unix.Close(peer)

	sa, err := unix.Getsockname(client)
	if err != nil {
		return fmt.Errorf("probe sock_destroy: getsockname: %w", err)
	}
	local, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fmt.Errorf("probe sock_destroy: client bound to %v", sa)
	}
	cookie, err := unix.GetsockoptUint64(client, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return fmt.Errorf("probe sock_destroy: socket cookie: %w", err)
	}
	s := &Socket{
		Family: unix.AF_INET,
		State:  stateEstablished,
		Src:    netip.AddrPortFrom(netip.AddrFrom4(local.Addr), uint16(local.Port)),
		Dst:    server,
		Cookie: cookie,
	}
	if err := Destroy(ns, s); err != nil {
		return fmt.Errorf("probe sock_destroy: %w", err)
	}

	fds := []unix.PollFd{{Fd: int32(peer), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 5000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("probe sock_destroy: poll the peer: %w", err)
		}
		if n == 0 {
			return errors.New("probe sock_destroy: the peer saw nothing within 5s")
		}
		break
	}
	var buf [1]byte
	n, _, err := unix.Recvfrom(peer, buf[:], unix.MSG_DONTWAIT)
	switch {
	case err == unix.ECONNRESET || err == unix.ECONNABORTED:
		return nil
	case err != nil:
		return fmt.Errorf("probe sock_destroy: the peer's read failed with %w, want ECONNRESET", err)
	case n == 0:
		return errors.New("probe sock_destroy: the peer read end of file, not a reset")
	default:
		return errors.New("probe sock_destroy: the peer read data, not a reset")
	}
}

// loopbackListener listens on 127.0.0.1:0 (blocking, with a 5s accept timeout).
func loopbackListener() (int, netip.AddrPort, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		return fail("set accept timeout", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail("bind 127.0.0.1:0", err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return fail("listen on 127.0.0.1", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	in, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fail("getsockname", fmt.Errorf("unexpected address %v", sa))
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port)), nil
}

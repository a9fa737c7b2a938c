package loader

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is the network namespace tcpshift works in.
type Namespace struct {
	Handle netns.NsHandle
	Ino    uint64 // identifies the namespace; names its pin directory
}

// OpenNamespace opens the network namespace at path, or the current one
// when path is empty.
func OpenNamespace(path string) (*Namespace, error) {
	if path == "" {
		path = "/proc/self/ns/net"
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return nil, fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	return &Namespace{Handle: h, Ino: st.Ino}, nil
}

// Close releases the namespace handle.
func (n *Namespace) Close() error { return n.Handle.Close() }

// Do runs fn on an OS thread switched into the namespace, so sockets fn
// creates belong to it.
func (n *Namespace) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(n.Handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime discards it rather than
		// reusing a thread stuck in the wrong namespace.
		return fmt.Errorf("return to network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// NewNamespace creates a fresh network namespace with lo up, without
// switching the caller into it. It lives while the handle is open.
func NewNamespace() (*Namespace, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	h, newErr := netns.New() // also switches this thread into it
	if err := netns.Set(orig); err != nil {
		return nil, fmt.Errorf("return to network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if newErr != nil {
		return nil, fmt.Errorf("create network namespace: %w", newErr)
	}
	ns, err := OpenNamespace(fmt.Sprintf("/proc/self/fd/%d", h))
	h.Close()
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in new network namespace: %w", err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("bring up lo: %w", err)
	}
	return ns, nil
}

// Path is a path that names the namespace while the handle is open.
func (n *Namespace) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.Handle)
}

// Cookie returns the namespace's cookie, as bpf_get_netns_cookie sees it.
func (n *Namespace) Cookie() (uint64, error) {
	var cookie uint64
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return cookie, nil
}

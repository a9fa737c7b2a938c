package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Destroy closes s with SOCK_DESTROY in ns (the peer sees a reset).
//
// The kernel finds the socket by its addresses, ports and interface and
// then insists on its cookie, so Destroy never closes another socket that
// reused the tuple. The local owner of s sees ECONNABORTED; an established
// peer gets a RST (ECONNRESET).
//
// A socket that is already gone is an error: Destroy then returns an error
// wrapping unix.ENOENT (so errors.Is(err, fs.ErrNotExist) holds too) that
// says the socket is gone; callers racing with connections that close on
// their own may ignore it. Other errors: EPERM without CAP_NET_ADMIN in the
// namespace's user namespace, EOPNOTSUPP when the kernel lacks
// CONFIG_INET_DIAG_DESTROY. ns may be netns.None() for the calling
// thread's namespace.
func Destroy(ns netns.NsHandle, s *Socket) error {
	id, err := sockID(s)
	if err != nil {
		return fmt.Errorf("sock_destroy: %w", err)
	}
	c, err := dial(ns)
	if err != nil {
		return fmt.Errorf("sock_destroy %s: %w", s, err)
	}
	defer c.close()
	seq, err := c.send(unix.SOCK_DESTROY, unix.NLM_F_ACK, reqV2(s.Family, 0, ^uint32(0), id))
	if err != nil {
		return fmt.Errorf("sock_destroy %s: %w", s, err)
	}
	for {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sock_destroy %s: %w", s, err)
		}
		done, err := each(b, seq, func(uint16, []byte) error { return nil })
		if err != nil {
			var errno unix.Errno
			errors.As(err, &errno)
			switch errno {
			case unix.ENOENT:
				return fmt.Errorf("sock_destroy %s: socket gone (closed, or its tuple now names another socket): %w", s, err)
			case unix.EPERM:
				return fmt.Errorf("sock_destroy %s: needs CAP_NET_ADMIN: %w", s, err)
			case unix.EOPNOTSUPP:
				return fmt.Errorf("sock_destroy %s: kernel without CONFIG_INET_DIAG_DESTROY: %w", s, err)
			}
			return fmt.Errorf("sock_destroy %s: %w", s, err)
		}
		if done {
			return nil
		}
	}
}

// sockID encodes s as a struct inet_diag_sockid.
func sockID(s *Socket) ([]byte, error) {
	b := make([]byte, 48)
	b[0], b[1] = byte(s.Src.Port()>>8), byte(s.Src.Port())
	b[2], b[3] = byte(s.Dst.Port()>>8), byte(s.Dst.Port())
	put := func(off int, a netip.Addr) error {
		switch s.Family {
		case unix.AF_INET:
			a = a.Unmap()
			if !a.Is4() {
				return fmt.Errorf("address %s of an AF_INET socket", a)
			}
			v := a.As4()
			copy(b[off:], v[:])
		case unix.AF_INET6:
			if !a.IsValid() {
				return errors.New("no address")
			}
			v := a.As16()
			copy(b[off:], v[:])
		default:
			return fmt.Errorf("socket family %d", s.Family)
		}
		return nil
	}
	if err := put(4, s.Src.Addr()); err != nil {
		return nil, err
	}
	if err := put(20, s.Dst.Addr()); err != nil {
		return nil, err
	}
	native.PutUint32(b[36:], s.Ifindex)
	native.PutUint32(b[40:], uint32(s.Cookie))
	native.PutUint32(b[44:], uint32(s.Cookie>>32))
	return b, nil
}

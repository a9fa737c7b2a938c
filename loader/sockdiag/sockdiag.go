// Package sockdiag reads and closes the TCP sockets of a network namespace
// through socket diagnostics (NETLINK_SOCK_DIAG), which need no tracing
// program: an inet_diag dump gives each socket's identity, its tcp_info byte
// counts and, on request, its value in a BPF socket-storage map; SOCK_DESTROY
// closes one socket.
//
// It is the fallback for kernels that refuse the BPF iterators
// (iter/bpf_sk_storage_map, iter/tcp with bpf_sock_destroy).
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Constants from the uapi headers linux/sock_diag.h, linux/inet_diag.h and
// linux/tcp.h (checked against the headers of Linux 6.18; all of them are
// ABI and never change).
const (
	sizeofReqV2 = 56 // struct inet_diag_req_v2
	sizeofMsg   = 72 // struct inet_diag_msg

	inetDiagInfo             = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagSkBPFStorages    = 20 // INET_DIAG_SK_BPF_STORAGES (response)
	inetDiagReqSkBPFStorages = 2  // INET_DIAG_REQ_SK_BPF_STORAGES (request)

	skDiagBPFStorageReqMapFD = 1 // SK_DIAG_BPF_STORAGE_REQ_MAP_FD
	skDiagBPFStorage         = 1 // SK_DIAG_BPF_STORAGE
	skDiagBPFStorageMapID    = 2 // SK_DIAG_BPF_STORAGE_MAP_ID
	skDiagBPFStorageMapValue = 3 // SK_DIAG_BPF_STORAGE_MAP_VALUE

	// Offsets of the RFC 4898 byte counters in struct tcp_info.
	tcpiBytesReceived = 128
	tcpiBytesSent     = 200
	tcpiBytesRetrans  = 208

	nlaTypeMask = 0x3fff // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

	recvTimeoutMs = 30_000 // per datagram; the kernel answers at once
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	stateEstablished = 1
	stateSynSent     = 2
	stateSynRecv     = 3
	stateFinWait1    = 4
	stateFinWait2    = 5
	stateTimeWait    = 6
	stateClose       = 7
	stateCloseWait   = 8
	stateLastAck     = 9
	stateListen      = 10
	stateClosing     = 11
)

// walkStates is the idiag_states mask of Walk: every state of a full socket,
// that is every state that can hold socket storage. TIME_WAIT sockets are
// minisocks without storage or tcp_info and are left out. Asking for
// SYN_RECV also returns request sockets (state SYN_RECV, no storage, no
// tcp_info) besides the full SYN_RECV sockets of TCP Fast Open.
const walkStates = 1<<stateEstablished | 1<<stateSynSent | 1<<stateSynRecv |
	1<<stateFinWait1 | 1<<stateFinWait2 | 1<<stateClose | 1<<stateCloseWait |
	1<<stateLastAck | 1<<stateListen | 1<<stateClosing

var native = binary.NativeEndian

// Socket is one TCP socket from a dump.
type Socket struct {
	Family   uint8          // unix.AF_INET or unix.AF_INET6
	State    uint8          // TCP state as in the kernel (1 ESTABLISHED … 10 LISTEN)
	Src, Dst netip.AddrPort // local and remote; IPv4-mapped for AF_INET6 sockets talking IPv4
	Ifindex  uint32         // the device the socket is bound to, 0 for none
	Cookie   uint64         // the socket cookie (SO_COOKIE, bpf_get_socket_cookie)
	// tcp_info counters; 0 when absent (request sockets). BytesSent counts
	// payload sent including retransmissions; BytesReceived counts the
	// sequence space received in order, so it includes the peer's FIN (see
	// FinReceived).
	BytesSent, BytesRetrans, BytesReceived uint64
	// Storage is the socket's value in the map passed to Walk, nil when it has none there.
	Storage []byte
}

// FinReceived reports whether the peer's FIN was received (the kernel's bytes_received then counts it).
func (s *Socket) FinReceived() bool {
	switch s.State {
	case stateCloseWait, stateLastAck, stateClosing, stateTimeWait:
		return true
	}
	return false
}

// String describes the socket for messages.
func (s *Socket) String() string {
	fam := "tcp4"
	if s.Family == unix.AF_INET6 {
		fam = "tcp6"
	}
	return fmt.Sprintf("%s %s->%s %s cookie %d", fam, s.Src, s.Dst, stateName(s.State), s.Cookie)
}

func stateName(st uint8) string {
	names := [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}
	if int(st) < len(names) && st != 0 {
		return names[st]
	}
	return "state " + strconv.Itoa(int(st))
}

// Walk calls fn for every TCP socket (IPv4 and IPv6, every state that can hold socket storage) of the
// network namespace ns, with each socket's value in the socket-storage map m (nil m: do not ask for
// storage). A non-nil error from fn stops the walk and is returned. Streams: never holds the whole dump.
//
// The states walked are all but TIME_WAIT (a TIME_WAIT socket has neither
// storage nor tcp_info). IPv4 sockets come first, then IPv6 ones. fn may keep
// the *Socket it is given. ns may be netns.None() for the calling thread's
// namespace. Asking for storage needs CAP_BPF or CAP_SYS_ADMIN.
func Walk(ns netns.NsHandle, m *ebpf.Map, fn func(*Socket) error) error {
	_, err := walk(ns, m, walkStates, fn)
	return err
}

// errStop ends a walk early from inside the package.
var errStop = errors.New("stop")

// walkStats describes a walk, for tests.
type walkStats struct {
	datagrams int // read from the kernel
	maxBuf    int // largest receive buffer used
}

// walk dumps the sockets in the states mask.
func walk(ns netns.NsHandle, m *ebpf.Map, states uint32, fn func(*Socket) error) (walkStats, error) {
	mapFD, mapID := -1, uint32(0)
	if m != nil {
		if m.Type() != ebpf.SkStorage {
			return walkStats{}, fmt.Errorf("sock_diag dump: map is %s, not %s", m.Type(), ebpf.SkStorage)
		}
		info, err := m.Info()
		if err != nil {
			return walkStats{}, fmt.Errorf("sock_diag dump: socket-storage map info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return walkStats{}, errors.New("sock_diag dump: the kernel does not report the socket-storage map's id")
		}
		mapFD, mapID = m.FD(), uint32(id)
	}
	c, err := dial(ns)
	if err != nil {
		return walkStats{}, fmt.Errorf("sock_diag dump: %w", err)
	}
	defer c.close()
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := c.dump(family, states, mapFD, mapID, fn); err != nil {
			return c.stats(), err
		}
	}
	runtime.KeepAlive(m) // the kernel took its own reference at each request
	return c.stats(), nil
}

// conn is a NETLINK_SOCK_DIAG socket in one namespace.
type conn struct {
	s         *nl.NetlinkSocket
	fd        int
	buf       []byte
	datagrams int
}

func dial(ns netns.NsHandle) (*conn, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// The kernel sizes dump datagrams by our read size, capped near 32 KiB;
	// recv grows the buffer for bigger ones (large socket-storage values).
	return &conn{s: s, fd: s.GetFd(), buf: make([]byte, 32<<10)}, nil
}

func (c *conn) close() { c.s.Close() }

func (c *conn) stats() walkStats { return walkStats{datagrams: c.datagrams, maxBuf: len(c.buf)} }

// recv returns the next datagram, valid until the next call.
func (c *conn) recv() ([]byte, error) {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_PEEK|unix.MSG_TRUNC)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, recvTimeoutMs)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("poll netlink socket: %w", err)
			}
			if n == 0 {
				return nil, errors.New("no answer from the kernel")
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("receive: %w", err)
		}
		if n > len(c.buf) {
			c.buf = make([]byte, n)
			continue
		}
		n, _, err = unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		c.datagrams++
		return c.buf[:n], nil
	}
}

// send sends a request of type typ with payload and returns its sequence number.
func (c *conn) send(typ, flags int, payload []byte) (uint32, error) {
	req := nl.NewNetlinkRequest(typ, flags)
	req.AddRawData(payload)
	if err := c.s.Send(req); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	return req.Seq, nil
}

// each calls fn for every netlink message of a datagram that answers seq.
// It returns done when the answer is complete: NLMSG_DONE, or NLMSG_ERROR
// (an error, or the ack of a request without a dump).
func each(b []byte, seq uint32, fn func(typ uint16, payload []byte) error) (done bool, err error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(native.Uint32(b[0:4]))
		typ := native.Uint16(b[4:6])
		mseq := native.Uint32(b[8:12])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		payload := b[unix.NLMSG_HDRLEN:l]
		if al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1); al < len(b) {
			b = b[al:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue // a stale answer
		}
		switch typ {
		case unix.NLMSG_NOOP:
		case unix.NLMSG_DONE:
			// The payload is the dump's final errno (0 or negative).
			if len(payload) >= 4 {
				if e := int32(native.Uint32(payload)); e < 0 {
					return true, unix.Errno(-e)
				}
			}
			return true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return true, errors.New("truncated NLMSG_ERROR")
			}
			if e := int32(native.Uint32(payload)); e < 0 {
				return true, unix.Errno(-e)
			}
			return true, nil // an ack
		case unix.NLMSG_OVERRUN:
			return true, errors.New("netlink overrun: data lost")
		default:
			if err := fn(typ, payload); err != nil {
				return true, err
			}
		}
	}
	return false, nil
}

// dump runs one SOCK_DIAG_BY_FAMILY dump of TCP sockets of family.
func (c *conn) dump(family uint8, states uint32, mapFD int, mapID uint32, fn func(*Socket) error) error {
	req := reqV2(family, 1<<(inetDiagInfo-1), states, nil)
	if mapFD >= 0 {
		// INET_DIAG_REQ_SK_BPF_STORAGES { SK_DIAG_BPF_STORAGE_REQ_MAP_FD u32 }
		var a [12]byte
		native.PutUint16(a[0:2], 12)
		native.PutUint16(a[2:4], inetDiagReqSkBPFStorages|unix.NLA_F_NESTED)
		native.PutUint16(a[4:6], 8)
		native.PutUint16(a[6:8], skDiagBPFStorageReqMapFD)
		native.PutUint32(a[8:12], uint32(mapFD))
		req = append(req, a[:]...)
	}
	seq, err := c.send(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, req)
	if err != nil {
		return fmt.Errorf("sock_diag dump: %w", err)
	}
	var fnErr error
	for {
		b, err := c.recv()
		if err != nil {
			return fmt.Errorf("sock_diag dump: %w", err)
		}
		done, err := each(b, seq, func(typ uint16, payload []byte) error {
			if typ != unix.SOCK_DIAG_BY_FAMILY {
				return nil
			}
			s, err := parseMsg(payload, mapID)
			if err != nil {
				return err
			}
			if err := fn(s); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return fnErr
		}
		if err != nil {
			return dumpError(family, mapFD >= 0, err)
		}
		if done {
			return nil
		}
	}
}

func familyName(family uint8) string {
	if family == unix.AF_INET6 {
		return "inet6"
	}
	return "inet"
}

func dumpError(family uint8, storage bool, err error) error {
	var errno unix.Errno
	if storage && errors.As(err, &errno) {
		switch errno {
		case unix.EPERM:
			return fmt.Errorf("sock_diag dump (%s): reading socket storage needs CAP_BPF or CAP_SYS_ADMIN: %w", familyName(family), err)
		case unix.EINVAL, unix.EOPNOTSUPP:
			return fmt.Errorf("sock_diag dump (%s): the kernel rejects the socket-storage request (it needs Linux 5.2+ and an sk_storage map): %w", familyName(family), err)
		}
	}
	return fmt.Errorf("sock_diag dump (%s): %w", familyName(family), err)
}

// reqV2 encodes a struct inet_diag_req_v2 for TCP; id may be nil (dumps).
func reqV2(family uint8, ext uint8, states uint32, id []byte) []byte {
	b := make([]byte, sizeofReqV2, sizeofReqV2+12)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	b[2] = ext
	native.PutUint32(b[4:8], states)
	if id != nil {
		copy(b[8:], id)
	} else {
		// No cookie: the id is ignored by dumps anyway.
		native.PutUint32(b[8+40:], ^uint32(0))
		native.PutUint32(b[8+44:], ^uint32(0))
	}
	return b
}

// parseMsg decodes a struct inet_diag_msg and its attributes.
func parseMsg(b []byte, mapID uint32) (*Socket, error) {
	if len(b) < sizeofMsg {
		return nil, fmt.Errorf("short inet_diag_msg (%d bytes)", len(b))
	}
	s := &Socket{Family: b[0], State: b[1]}
	sport := binary.BigEndian.Uint16(b[4:6])
	dport := binary.BigEndian.Uint16(b[6:8])
	var src, dst netip.Addr
	switch s.Family {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return nil, fmt.Errorf("inet_diag_msg of family %d", s.Family)
	}
	s.Src = netip.AddrPortFrom(src, sport)
	s.Dst = netip.AddrPortFrom(dst, dport)
	s.Ifindex = native.Uint32(b[40:44])
	s.Cookie = uint64(native.Uint32(b[44:48])) | uint64(native.Uint32(b[48:52]))<<32
	err := attrs(b[sizeofMsg:], func(typ uint16, v []byte) error {
		switch typ {
		case inetDiagInfo:
			if len(v) >= tcpiBytesReceived+8 {
				s.BytesReceived = native.Uint64(v[tcpiBytesReceived:])
			}
			if len(v) >= tcpiBytesSent+8 {
				s.BytesSent = native.Uint64(v[tcpiBytesSent:])
			}
			if len(v) >= tcpiBytesRetrans+8 {
				s.BytesRetrans = native.Uint64(v[tcpiBytesRetrans:])
			}
		case inetDiagSkBPFStorages:
			return attrs(v, func(typ uint16, v []byte) error {
				if typ != skDiagBPFStorage {
					return nil
				}
				var id uint32
				var value []byte
				err := attrs(v, func(typ uint16, v []byte) error {
					switch typ {
					case skDiagBPFStorageMapID:
						if len(v) < 4 {
							return errors.New("short SK_DIAG_BPF_STORAGE_MAP_ID")
						}
						id = native.Uint32(v)
					case skDiagBPFStorageMapValue:
						value = v
					}
					return nil
				})
				if err != nil {
					return err
				}
				if id == mapID && value != nil {
					s.Storage = append(make([]byte, 0, len(value)), value...)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", s, err)
	}
	return s, nil
}

// attrs calls fn for each netlink attribute in b, with the type's flags masked.
func attrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		l := int(native.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return fmt.Errorf("malformed attribute (length %d of %d)", l, len(b))
		}
		if err := fn(native.Uint16(b[2:4])&nlaTypeMask, b[4:l]); err != nil {
			return err
		}
		al := (l + 3) &^ 3
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	return nil
}

package maps

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
)

// Tagger tags the userspace proxy's sockets like TagProxyConn, with one
// bare bpf(2) call: no marshalling, no allocation, for every connection.
type Tagger struct {
	fd uint32 // the conns map's; the Set keeps it open
}

// Tagger returns a tagger for s's conns map, valid while s is open. It
// takes the map's descriptor as it is: s must come from Open (the proxy's
// sources do), not OpenLazy.
func (s *Set) Tagger() *Tagger {
	return &Tagger{fd: uint32(s.Conns.FD())}
}

// bpfMapUpdateElem is the kernel's union bpf_attr for BPF_MAP_UPDATE_ELEM,
// little-endian. Its pointers stay unsafe.Pointer until the call, so a stack
// that moves before it moves them too.
type bpfMapUpdateElem struct {
	mapFD uint32
	_     uint32
	key   unsafe.Pointer
	_     [8 - unsafe.Sizeof(uintptr(0))]byte
	value unsafe.Pointer
	_     [8 - unsafe.Sizeof(uintptr(0))]byte
	flags uint64
}

// Tag marks a socket the proxy is about to connect to an endpoint, so
// sockops counts it like the kernel's own connections.
func (t *Tagger) Tag(fd int, endpoint, generation uint32) error {
	key := int32(fd)
	c := bpf.TcpshiftConn{Endpoint: endpoint, Generation: generation, Flags: bpf.TcpshiftConnFlagsCONN_PROXY}
	attr := bpfMapUpdateElem{mapFD: t.fd, key: unsafe.Pointer(&key), value: unsafe.Pointer(&c)}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_UPDATE_ELEM, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return fmt.Errorf("tag connection to endpoint %d: %w", endpoint, errno)
	}
	return nil
}

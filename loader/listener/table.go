package listener

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tcpListen is the TCP_LISTEN state as printed in /proc/net/tcp{,6}.
const tcpListen = "0A"

// entry is one listening socket from /proc/net/tcp or /proc/net/tcp6.
type entry struct {
	addr  netip.AddrPort // local address; IPv4-mapped addresses stay mapped
	inode uint64
}

// readTables reads the listening sockets of tcp and tcp6 below dir, which is a
// procfs net directory such as /proc/thread-self/net or /proc/1234/net.
// A missing tcp6 (IPv6 disabled) is not an error.
func readTables(dir string) ([]entry, error) {
	var all []entry
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			if name == "tcp6" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		entries, err := parseTable(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		all = append(all, entries...)
	}
	return all, nil
}

// parseTable parses the listening sockets of a /proc/net/tcp or tcp6 table.
func parseTable(r io.Reader) ([]entry, error) {
	var entries []entry
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		addr, err := parseHexAddrPort(fields[1])
		if err != nil {
			return nil, err
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad inode %q: %w", fields[9], err)
		}
		if inode == 0 {
			continue
		}
		entries = append(entries, entry{addr: addr, inode: inode})
	}
	return entries, sc.Err()
}

// parseHexAddrPort decodes "0100007F:1F90" or the 32 hex digit IPv6 form.
// The address is printed as 32-bit words in host byte order; the port is a
// plain hex number.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok || (len(hexAddr) != 8 && len(hexAddr) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q: %w", s, err)
	}
	var b [16]byte
	for i := 0; i < len(hexAddr)/8; i++ {
		w, err := strconv.ParseUint(hexAddr[i*8:i*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address in %q: %w", s, err)
		}
		binary.NativeEndian.PutUint32(b[i*4:], uint32(w))
	}
	var ip netip.Addr
	if len(hexAddr) == 8 {
		ip = netip.AddrFrom4([4]byte(b[:4]))
	} else {
		ip = netip.AddrFrom16(b)
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// Match tiers, best first.
const (
	tierExact     = iota // bound exactly to addr
	tierWildcard         // 0.0.0.0:port or [::]:port of addr's family
	tierMapped           // [::ffff:a.b.c.d]:port for an IPv4 addr
	tierDualStack        // [::]:port for an IPv4 addr, only if not IPV6_V6ONLY
)

type candidate struct {
	entry
	tier int
}

// match returns the entries that can accept connections for addr, best first.
// addr must already be unmapped and without zone.
func match(entries []entry, addr netip.AddrPort) []candidate {
	port := addr.Port()
	tierOf := func(e entry) (int, bool) {
		if e.addr.Port() != port {
			return 0, false
		}
		ip := e.addr.Addr()
		if addr.Addr().Is4() {
			switch {
			case ip == addr.Addr():
				return tierExact, true
			case ip == netip.IPv4Unspecified():
				return tierWildcard, true
			case ip.Is4In6() && ip.Unmap() == addr.Addr():
				return tierMapped, true
			case ip == netip.IPv6Unspecified():
				return tierDualStack, true
			}
			return 0, false
		}
		switch {
		case ip == addr.Addr():
			return tierExact, true
		case ip == netip.IPv6Unspecified():
			return tierWildcard, true
		}
		return 0, false
	}
	var out []candidate
	for tier := tierExact; tier <= tierDualStack; tier++ {
		for _, e := range entries {
			if t, ok := tierOf(e); ok && t == tier {
				out = append(out, candidate{entry: e, tier: t})
			}
		}
	}
	return out
}

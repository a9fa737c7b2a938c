// Package fakehost is a plan.Host described in text, for tests without root:
// the listening sockets, addresses and routes of a network namespace that
// is not there. Its messages for a missing listener read like
// loader/listener's, with fixed namespace inodes.
//
// One statement a line, # starts a comment:
//
//	listen ENDPOINT [on BOUND] [v6only] [by OWNER...]   a socket serves ENDPOINT, bound to BOUND
//	                                                     (ENDPOINT's address by default; 0.0.0.0:PORT
//	                                                     or [::]:PORT serves every address of the port)
//	elsewhere ENDPOINT [by OWNER...]                    a listener in another network namespace
//	fail ENDPOINT MESSAGE...                            finding ENDPOINT's listener fails so
//	addr IP IFACE                                       an address of an interface (lo: loopback)
//	route PREFIX KIND [DESC...]                         a main-table route; KIND: unicast, local,
//	                                                     broadcast, multicast, other, blackhole,
//	                                                     unreachable or prohibit
//	fail-route IP MESSAGE...                            looking up the route to IP fails so
//	fail-addrs MESSAGE...                               listing the addresses fails so
package fakehost

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpshift/tcpshift/plan"
)

// Host is the described namespace. Ours are the addresses tcpshift's local
// routes cover (the state in force): they route locally, as in the kernel.
type Host struct {
	listeners  map[netip.AddrPort]plan.Listener
	elsewhere  map[netip.AddrPort]string
	fails      map[netip.AddrPort]string
	addrs      map[netip.Addr]string
	routes     []route
	failRoutes map[netip.Addr]string
	failAddrs  string

	Ours map[netip.Addr]bool
	// Opened lists the endpoints whose listener Listener handed out, by
	// handle: the sockets a real host would hold open now.
	Opened []netip.AddrPort
}

type route struct {
	prefix netip.Prefix
	kind   string
	desc   string
}

// Namespace inodes in messages: this one and another.
const (
	ThisNetns  = 4026531840
	OtherNetns = 4026532999
)

// DefaultOwner owns a listener the description gives no owner.
const DefaultOwner = "pid 1000 (backend) fd 3"

var kinds = map[string]plan.RouteKind{
	"unicast": plan.RouteUnicast, "local": plan.RouteLocal, "broadcast": plan.RouteBroadcast,
	"multicast": plan.RouteMulticast, "other": plan.RouteOther,
	"blackhole": -1, "unreachable": -1, "prohibit": -1,
}

// Parse reads a description.
func Parse(text string) (*Host, error) {
	h := &Host{
		listeners: map[netip.AddrPort]plan.Listener{}, elsewhere: map[netip.AddrPort]string{},
		fails: map[netip.AddrPort]string{}, addrs: map[netip.Addr]string{},
		failRoutes: map[netip.Addr]string{}, Ours: map[netip.Addr]bool{},
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if err := h.statement(f); err != nil {
			return nil, fmt.Errorf("host line %d: %s: %w", n, f[0], err)
		}
	}
	return h, nil
}

func (h *Host) statement(f []string) error {
	if len(f) < 2 {
		return errors.New("too few words")
	}
	switch f[0] {
	case "listen":
		return h.listen(f[1:])
	case "elsewhere":
		ep, err := netip.ParseAddrPort(f[1])
		if len(f) > 2 && f[2] != "by" {
			return errors.New("want elsewhere ENDPOINT [by OWNER...]")
		}
		h.elsewhere[ep] = ownerOf(f[min(3, len(f)):])
		return err
	case "fail":
		ep, err := netip.ParseAddrPort(f[1])
		h.fails[ep] = strings.Join(f[2:], " ")
		return err
	case "addr":
		a, err := netip.ParseAddr(f[1])
		if err == nil && len(f) != 3 {
			err = errors.New("want addr IP IFACE")
		}
		h.addrs[a] = f[len(f)-1]
		return err
	case "route":
		p, err := netip.ParsePrefix(f[1])
		if err == nil && (len(f) < 3 || !known(f[2])) {
			err = errors.New("want route PREFIX KIND [DESC...], KIND one of unicast, local, broadcast, multicast, other, blackhole, unreachable, prohibit")
		}
		if err == nil {
			h.routes = append(h.routes, route{p.Masked(), f[2], strings.Join(f[3:], " ")})
		}
		return err
	case "fail-route":
		a, err := netip.ParseAddr(f[1])
		h.failRoutes[a] = strings.Join(f[2:], " ")
		return err
	case "fail-addrs":
		h.failAddrs = strings.Join(f[1:], " ")
		return nil
	}
	return errors.New("unknown statement")
}

func known(kind string) bool {
	_, ok := kinds[kind]
	return ok
}

// listen reads "ENDPOINT [on BOUND] [v6only] [by OWNER...]".
func (h *Host) listen(f []string) error {
	ep, err := netip.ParseAddrPort(f[0])
	if err != nil {
		return err
	}
	l := plan.Listener{Addr: ep, Owner: DefaultOwner}
	for i := 1; i < len(f); i++ {
		switch {
		case f[i] == "on" && i+1 < len(f):
			if l.Addr, err = netip.ParseAddrPort(f[i+1]); err != nil {
				return err
			}
			i++
		case f[i] == "v6only":
			l.V6Only = true
		case f[i] == "by":
			l.Owner = ownerOf(f[i+1:])
			i = len(f)
		default:
			return fmt.Errorf("unknown word %q", f[i])
		}
	}
	l.IPv6 = l.Addr.Addr().Is6()
	h.listeners[ep] = l
	return nil
}

func ownerOf(words []string) string {
	if len(words) == 0 {
		return DefaultOwner
	}
	return strings.Join(words, " ")
}

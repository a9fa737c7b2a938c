package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// endpointKey names a checked endpoint; the address guards against an id
// that a reload gave to another endpoint.
type endpointKey struct {
	service string
	id      uint32
	addr    netip.AddrPort
}

// checkState follows one endpoint's checks, as HAProxy counts them: fall
// failures in a row take it down, rise successes in a row bring it back.
type checkState struct {
	subset string
	health maps.Health
	ok     int // successes in a row
	fail   int // failures in a row
}

// observe counts one check result and reports whether the health changed.
// An unchecked endpoint is already in the table: one success makes it up,
// fall failures take it down.
func (s *checkState) observe(success bool, h *config.Health) bool {
	if success {
		s.fail = 0
		s.ok++
		switch {
		case s.health == maps.HealthUnchecked,
			s.health == maps.HealthDown && s.ok >= h.Rise:
			s.health = maps.HealthUp
			return true
		}
		return false
	}
	s.ok = 0
	s.fail++
	if s.health != maps.HealthDown && s.fail >= h.Fall {
		s.health = maps.HealthDown
		return true
	}
	return false
}

// result is one probe's outcome.
type result struct {
	key endpointKey
	err error // nil: connected within the timeout
}

// probeLoop connects to an endpoint at once and then every interval until
// ctx ends, handing each outcome to report (false: ctx ended).
func probeLoop(ctx context.Context, key endpointKey, h *config.Health, inNS func(func() error) error, report func(context.Context, result) bool) {
	tick := time.NewTicker(h.Interval)
	defer tick.Stop()
	for {
		err := probe(ctx, key.addr, h.Timeout, inNS)
		if ctx.Err() != nil {
			return
		}
		if !report(ctx, result{key, err}) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// probe is a TCP connect check: the endpoint passes if it accepts a
// connection within timeout. The socket is made in the target namespace.
func probe(ctx context.Context, addr netip.AddrPort, timeout time.Duration, inNS func(func() error) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c net.Conn
	err := inNS(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no answer within %s", timeout)
		}
		return err
	}
	return c.Close()
}

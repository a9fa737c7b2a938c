package userspace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// errNoEndpoint is a table that refuses every connection.
var errNoEndpoint = errors.New("no endpoint has weight")

// plan is where a connection's dial stands: the client's affinity first,
// then the chosen subset's endpoints from their turn, then another pick,
// within Attempts connects.
type plan struct {
	table    *Table
	sticky   bool
	key      affinityKey
	affinity bool // the endpoint being tried is the client's affinity
	subset   int
	order    []Endpoint
	next     int
	tried    int
	lastErr  error
	ep       Endpoint // being tried
}

// next returns the endpoint to try after the affinity's, or why there is
// none left.
func (pl *plan) nextEndpoint(attempts int) (Endpoint, error) {
	for {
		if pl.next < len(pl.order) && pl.tried < attempts {
			ep := pl.order[pl.next]
			pl.next++
			pl.tried++
			return ep, nil
		}
		if pl.tried >= attempts {
			return Endpoint{}, fmt.Errorf("%d attempts: %w", attempts, pl.lastErr)
		}
		subset, order, ok := pl.table.pick(pl.order[:0])
		if !ok {
			return Endpoint{}, pl.lastErr
		}
		pl.subset, pl.order, pl.next = subset, order, 0
	}
}

// dial starts connecting a new connection to its endpoint.
func (c *conn) dial() {
	p := c.w.p
	t, err := p.opts.Source.Table(c.svc.ID)
	if err != nil {
		c.refuse(err)
		return
	}
	pl := &c.plan
	pl.table, pl.lastErr = t, errNoEndpoint
	if t.AffinityTTL() > 0 {
		pl.sticky = true
		pl.key = affinityKey{service: c.svc.ID, client: c.peerAddr().Addr().Unmap()}
		if ep, ok := p.aff.get(t, pl.key, c.w.now); ok {
			pl.affinity = true
			if c.connect(ep) {
				return
			}
			pl.affinity = false
		}
	}
	c.dialNext()
}

// dialNext connects to the next endpoint that takes a connect, or refuses
// the client when none is left.
func (c *conn) dialNext() {
	for {
		ep, err := c.plan.nextEndpoint(c.w.p.opts.Attempts)
		if err != nil {
			c.refuse(err)
			return
		}
		if c.connect(ep) {
			return
		}
	}
}

// connect starts a non-blocking connect to ep; false if it failed at once.
func (c *conn) connect(ep Endpoint) bool {
	w := c.w
	fd, err := sysSocket(family(ep.Addr))
	if err != nil {
		c.failed(ep, fmt.Errorf("socket: %w", err))
		return false
	}
	// Tag the socket before connect(), so sockops counts it once
	// established. Accounting never blocks traffic.
	if err := w.p.opts.Source.Tag(fd, ep); err != nil && c.debugging() {
		c.debug("tag connection", "endpoint", ep.Addr, "err", err)
	}
	if err := sysConnect(fd, ep.Addr); err != nil && err != unix.EINPROGRESS {
		sysClose(fd)
		c.failed(ep, fmt.Errorf("connect %s: %w", ep.Addr, err))
		return false
	}
	// A generation per attempt: an event still queued for an earlier
	// attempt's socket cannot pass for this one's.
	w.gen++
	c.gen = w.gen
	c.backend = sock{fd: fd, peer: ep.Addr}
	if err := w.watch(c, false, fd); err != nil {
		sysClose(fd)
		c.backend.fd = -1
		c.failed(ep, fmt.Errorf("watch connect: %w", err))
		return false
	}
	c.plan.ep = ep
	c.since = w.now
	w.dialing.push(c)
	if c.up.pending() && isLoopback(ep.Addr.Addr()) {
		return c.sendEarly()
	}
	return true
}

// sendEarly writes what the client sent before it was accepted to a
// loopback endpoint at once: over loopback the handshake is done when
// connect returns, which spares waiting for epoll to say so. A connect
// still in progress takes nothing (EAGAIN) and is waited for as any other;
// one that failed fails the write, and the next endpoint is tried.
func (c *conn) sendEarly() bool {
	f := &c.up
	c.backend.writable = true
	off := f.off
	err := c.w.flush(f)
	switch {
	case err != nil && f.off == off:
		c.dialFailed(err)
		return true // dialFailed went on with the next endpoint
	case err != nil:
		c.forward() // the pump ends it with the write error
		return true
	case f.off > off || !f.pending():
		c.forward()
	}
	return true
}

// connected takes epoll's word on a connect in progress.
func (c *conn) connected(ev uint32) {
	if c.list != &c.w.dialing {
		return
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		err := sockError(c.backend.fd)
		if err == 0 {
			err = unix.ECONNRESET
		}
		c.dialFailed(err)
		return
	}
	if ev&unix.EPOLLOUT == 0 {
		return
	}
	c.forward()
}

// forward starts forwarding once the backend is connected.
func (c *conn) forward() {
	w := c.w
	w.dialing.remove(c)
	pl := &c.plan
	if pl.sticky && !pl.affinity {
		w.p.aff.set(pl.table, pl.key, pl.subset, pl.ep.ID, w.now)
	}
	c.plan = plan{ep: pl.ep, order: pl.order[:0]} // let the table go
	c.forwarded = true
	c.since = w.now
	w.fresh.push(c)
	if err := w.watch(c, true, c.client.fd); err != nil {
		c.end(true)
		return
	}
	// A new socket has room to write; epoll says so only on its next
	// wait, and saying it now spares a buffer for an early answer.
	c.client.writable = true
	if c.debugging() {
		c.debug("forwarding", "endpoint", c.plan.ep.Addr)
	}
	c.pump()
}

// timedOut gives up a connect that took DialTimeout.
func (c *conn) timedOut() {
	c.dialFailed(unix.ETIMEDOUT)
}

func (c *conn) dialFailed(err error) {
	c.w.dialing.remove(c)
	sysClose(c.backend.fd)
	c.backend.fd = -1
	c.failed(c.plan.ep, fmt.Errorf("connect %s: %w", c.plan.ep.Addr, err))
	c.dialNext()
}

// failed notes an endpoint that did not take the connection.
func (c *conn) failed(ep Endpoint, err error) {
	if c.plan.affinity {
		c.plan.affinity = false
		return
	}
	c.plan.lastErr = err
	if c.debugging() {
		c.debug("endpoint failed", "endpoint", ep.Addr, "err", err)
	}
}

// refuse resets the client, as the kernel paths refuse.
func (c *conn) refuse(err error) {
	p := c.w.p
	p.opts.Log.Warn("connection refused", "service", c.svc.Name, "client", c.peerAddr(), "err", err)
	if err := p.opts.Source.Refused(c.svc.ID); err != nil {
		p.opts.Log.Warn("count refused connection", "service", c.svc.Name, "err", err)
	}
	reset(c.client.fd)
	c.client.fd = -1
	c.finish()
}

package userspace

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// keepaliveAfter is how long a connection forwards before its backend
// socket gets keepalive: the first probe is due after keepIdle anyway, so
// short connections need not pay four setsockopt calls for it. (Client
// sockets inherit keepalive from the listener.)
const keepaliveAfter = time.Second

// sock is one of a connection's sockets with what epoll last said of it.
type sock struct {
	fd       int
	readable bool // a read may return something (data, EOF or error)
	writable bool
	// hup: the peer's FIN or an error was there when epoll reported, so
	// a short read has not seen everything yet.
	hup bool
	// failed: epoll reported an error (a reset) that only a read or a
	// write returns, and none may come: see pendingError.
	failed  bool
	wrote   bool // something was written: the next write sets TCP_NODELAY
	nodelay bool
	peer    netip.AddrPort // where it leads, when known
	unpaced bool           // its congestion control was looked at
}

// conn is one client connection: its dial, then both directions.
type conn struct {
	w         *worker
	slot, gen uint32
	svc       Service
	peer      netip.AddrPort
	client    sock
	backend   sock
	up, down  flow // client to backend, backend to client
	forwarded bool // connected: forwarding
	plan      plan
	since     time.Time // the connect's start, then the connection's
	prev      *conn     // in the worker's dialing or fresh list
	next      *conn
	list      *connList
}

// newConn starts a connection on an accepted socket, reusing an ended one.
func (w *worker) newConn(slot uint32, svc Service, fd int) *conn {
	var c *conn
	if n := len(w.idle); n > 0 {
		c = w.idle[n-1]
		w.idle = w.idle[:n-1]
		order := c.plan.order[:0]
		*c = conn{plan: plan{order: order}}
	} else {
		c = &conn{}
	}
	w.gen++
	c.w, c.slot, c.gen, c.svc = w, slot, w.gen, svc
	c.client, c.backend = sock{fd: fd, nodelay: true}, sock{fd: -1}
	if a := svc.Frontend.Addr(); a.IsLoopback() {
		// Only a loopback client reaches a loopback address.
		c.client.peer = netip.AddrPortFrom(a, 0)
	}
	c.up = flow{src: &c.client, dst: &c.backend}
	c.down = flow{src: &c.backend, dst: &c.client}
	return c
}

// peerAddr is the client's address, asked of the kernel only when needed
// (affinity, logs): accept does not return it.
func (c *conn) peerAddr() netip.AddrPort {
	if c.peer.IsValid() {
		return c.peer
	}
	if c.client.fd >= 0 {
		if sa, err := unix.Getpeername(c.client.fd); err == nil {
			c.peer = addrPort(sa)
			c.client.peer = c.peer
		}
	}
	return c.peer
}

// early reads what the client sent before its connection was accepted (a
// client that speaks first has usually sent its request by then); it is
// written once the backend is connected, or with the connect (sendEarly).
// A client that is gone already ends here; false then.
func (c *conn) early() bool {
	c.client.readable = true
	if err := c.w.fill(&c.up); err != nil {
		reset(c.client.fd)
		c.client.fd = -1
		c.w.drop(&c.up)
		c.finish()
		return false
	}
	return true
}

// event takes what epoll reported for one of the sockets.
func (c *conn) event(client bool, ev uint32) {
	s := &c.backend
	if client {
		s = &c.client
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.writable = true
	}
	if ev&unix.EPOLLERR != 0 {
		s.failed = true
	}
	if !c.forwarded {
		if !client {
			c.connected(ev)
		}
		return
	}
	c.pump()
}

// pump moves both directions as far as the sockets let them, and ends the
// connection when both ended or one failed.
func (c *conn) pump() {
	w := c.w
	err := w.move(&c.up)
	if err == nil {
		err = w.move(&c.down)
	}
	if err == nil {
		err = c.pendingError()
	}
	switch {
	case err != nil:
		// A reset, a failed write: pass it on as a reset both ways, so
		// neither peer waits for data that will not come.
		c.end(true)
	case c.up.done && c.down.done:
		c.end(false)
	case c.up.done && !c.up.shut:
		c.up.shut = true
		sysShutdownWrite(c.backend.fd)
	case c.down.done && !c.down.shut:
		c.down.shut = true
		sysShutdownWrite(c.client.fd)
	}
}

// pendingError returns the error epoll reported on a socket that the
// moves did not read or write: its direction has ended, or waits for the
// other peer to take bytes. Left there, a peer's reset would reach the
// other peer only once that one sends or reads again, if ever.
func (c *conn) pendingError() error {
	for _, s := range [...]*sock{&c.client, &c.backend} {
		if !s.failed {
			continue
		}
		s.failed = false
		if err := sockError(s.fd); err != 0 {
			return err
		}
	}
	return nil
}

// end closes both sockets: with resets, or with FINs once both directions
// ended (close sends the FIN still owed, as every byte was read).
func (c *conn) end(rst bool) {
	w := c.w
	for _, f := range []*flow{&c.up, &c.down} {
		w.drop(f)
	}
	for _, fd := range []int{c.client.fd, c.backend.fd} {
		if fd < 0 {
			continue
		}
		if rst {
			reset(fd)
		} else {
			sysClose(fd)
		}
	}
	c.finish()
}

// close closes both sockets without waiting for their end (Shutdown).
func (c *conn) close() {
	c.end(false)
}

func (c *conn) finish() {
	if c.list != nil {
		c.list.remove(c)
	}
	c.w.release(c)
}

// keepalive turns keepalive on for a backend socket that lived long
// enough to need it.
func (c *conn) keepalive() {
	if err := setKeepalive(c.backend.fd); err != nil && c.debugging() {
		c.debug("set keepalive", "err", err)
	}
}

// debug logs at debug level; callers check debugging first, so that a
// disabled level costs no boxing of the arguments.
func (c *conn) debug(msg string, args ...any) {
	c.w.p.opts.Log.Debug(msg, append([]any{"service", c.svc.Name, "client", c.peerAddr()}, args...)...)
}

func (c *conn) debugging() bool {
	return c.w.p.opts.Log.Enabled(context.Background(), slog.LevelDebug)
}

// connList is a list of connections in the order they joined it: all wait
// for the same delay, so the head is always due first.
type connList struct{ head, tail *conn }

func (l *connList) push(c *conn) {
	c.list, c.prev, c.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.list, c.prev, c.next = nil, nil, nil
}

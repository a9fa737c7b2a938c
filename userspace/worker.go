package userspace

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A worker is one event loop: it waits in its own epoll for every socket it
// owns and moves each connection on as far as its sockets let it, so a
// connection costs no goroutine, no stack and no scheduler wakeup. Workers
// share the listeners (EPOLLEXCLUSIVE: a new connection wakes one idle
// worker), and the one that accepts a connection keeps it to its end.
type worker struct {
	p      *Proxy
	epfd   int
	wakefd int // eventfd: commands are waiting
	events []unix.EpollEvent
	now    time.Time // when the last wait returned

	mu     sync.Mutex
	cmds   []func(*worker)
	exited bool

	listeners []*listener // by slot; nil: free
	conns     []*conn     // by slot; nil: free
	freeSlots []uint32
	live      int
	gen       uint32 // of the last connection opened

	dialing  connList  // connects in progress, oldest first
	fresh    connList  // forwarding without keepalive yet, oldest first
	retry    time.Time // when to accept again after running out of fds
	stopping bool      // Shutdown: end once the last connection ended
	done     chan struct{}

	buf   []byte   // what one read moves, written on at once
	spare [][]byte // buffers for bytes a writer could not take yet
	idle  []*conn  // ended connections, for reuse
	pipes []*pipe  // for splicing, empty
}

// Event kinds, in the low bits of an epoll event's data.
const (
	kindWake = iota
	kindListener
	kindClient
	kindBackend
)

// token packs kind, slot and the slot's generation into an event's data:
// an event harvested for a connection that ended since, and whose slot was
// given to another one, is recognized by its generation and dropped.
func token(kind int, slot, gen uint32) (int32, int32) {
	return int32(uint32(kind) | slot<<2), int32(gen)
}

func untoken(ev *unix.EpollEvent) (kind int, slot, gen uint32) {
	lo := uint32(ev.Fd)
	return int(lo & 3), lo >> 2, uint32(ev.Pad)
}

const (
	bufSize      = 64 << 10
	maxSpare     = 64 // buffers and pipes kept for reuse, each
	acceptPause  = 50 * time.Millisecond
	maxEvents    = 256
	connEvents   = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	listenEvents = unix.EPOLLIN | unix.EPOLLEXCLUSIVE
	endEvents    = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
)

func newWorker(p *Proxy) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	w := &worker{p: p, epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, maxEvents), buf: make([]byte, bufSize)}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	ev.Fd, ev.Pad = token(kindWake, 0, 0)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// post runs fn in the worker's loop; a worker that ended drops it.
func (w *worker) post(fn func(*worker)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exited {
		return
	}
	w.cmds = append(w.cmds, fn)
	one := [8]byte{1}
	unix.Write(w.wakefd, one[:])
}

// run waits for events and handles them until the worker stops.
func (w *worker) run() {
	defer w.close()
	for !w.stopping || w.live > 0 {
		n, err := unix.EpollWait(w.epfd, w.events, w.timeout())
		w.now = time.Now()
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.p.opts.Log.Error("proxy worker stopped", "err", err)
			w.closeAll()
			return
		}
		w.handleAll(w.events[:max(n, 0)])
		w.expire()
	}
}

// Passes over one wait's events, in the order they are handled.
const (
	passNow = iota // bytes or a connection a peer waits for
	passEnd        // a peer's FIN or error: the connection's end
	passes
)

// handleAll handles one wait's events in two passes: first what a peer
// waits for (bytes to pass on, new connections), in the order epoll
// reported them, then the ends of connections (reading a FIN, passing it
// on, closing), which nobody waits for and which would otherwise delay the
// answers that came in the same wait (docs/benchmarks has what it moved).
func (w *worker) handleAll(events []unix.EpollEvent) {
	for pass := range passes {
		for i := range events {
			if passOf(&events[i]) == pass {
				w.handle(&events[i])
			}
		}
	}
}

func passOf(ev *unix.EpollEvent) int {
	if kind, _, _ := untoken(ev); (kind == kindClient || kind == kindBackend) && ev.Events&endEvents != 0 {
		return passEnd
	}
	return passNow
}

func (w *worker) handle(ev *unix.EpollEvent) {
	kind, slot, gen := untoken(ev)
	switch kind {
	case kindWake:
		var b [8]byte
		unix.Read(w.wakefd, b[:])
		w.mu.Lock()
		cmds := w.cmds
		w.cmds = nil
		w.mu.Unlock()
		for _, fn := range cmds {
			fn(w)
		}
	case kindListener:
		if l := w.listeners[slot]; l != nil {
			w.accept(l)
		}
	default:
		if c := w.conns[slot]; c != nil && c.gen == gen {
			c.event(kind == kindClient, ev.Events)
		}
	}
}

// timeout is how long the wait may last: until the oldest connect times
// out or the oldest connection is due for keepalive, or forever.
func (w *worker) timeout() int {
	next := w.due()
	if next.IsZero() {
		return -1
	}
	ms := (next.Sub(w.now) + time.Millisecond - 1) / time.Millisecond
	return int(max(ms, 0))
}

// due is when the next timer is due; zero when none is pending.
func (w *worker) due() time.Time {
	var next time.Time
	if c := w.dialing.head; c != nil {
		next = c.since.Add(w.p.opts.DialTimeout)
	}
	if c := w.fresh.head; c != nil && (next.IsZero() || c.since.Add(keepaliveAfter).Before(next)) {
		next = c.since.Add(keepaliveAfter)
	}
	if !w.retry.IsZero() && (next.IsZero() || w.retry.Before(next)) {
		next = w.retry
	}
	return next
}

// expire times out connects and gives connections old enough keepalive.
func (w *worker) expire() {
	for c := w.dialing.head; c != nil && !w.now.Before(c.since.Add(w.p.opts.DialTimeout)); c = w.dialing.head {
		c.timedOut()
	}
	for c := w.fresh.head; c != nil && !w.now.Before(c.since.Add(keepaliveAfter)); c = w.fresh.head {
		w.fresh.remove(c)
		c.keepalive()
	}
	if !w.retry.IsZero() && !w.now.Before(w.retry) {
		w.retry = time.Time{}
		for slot, l := range w.listeners {
			if l != nil && l.paused {
				l.paused = false
				if err := w.watchListener(l, uint32(slot)); err != nil {
					w.p.opts.Log.Error("proxy cannot watch its listener", "service", l.svc.Name, "err", err)
				}
			}
		}
	}
}

// addListener starts accepting on l too.
func (w *worker) addListener(l *listener) {
	slot := uint32(len(w.listeners))
	for i, x := range w.listeners {
		if x == nil {
			slot = uint32(i)
			break
		}
	}
	// Each worker has its own view of l: whether it paused accepting.
	l = &listener{svc: l.svc, fd: l.fd, shared: l}
	if err := w.watchListener(l, slot); err != nil {
		w.p.opts.Log.Error("proxy cannot watch its listener", "service", l.svc.Name, "err", err)
		return
	}
	if int(slot) == len(w.listeners) {
		w.listeners = append(w.listeners, l)
	} else {
		w.listeners[slot] = l
	}
}

// watchListener has epoll report l's connections: level-triggered, so
// one accept per report suffices (no accept that finds the queue empty),
// and exclusive, so a connection wakes one idle worker, not all.
func (w *worker) watchListener(l *listener, slot uint32) error {
	ev := unix.EpollEvent{Events: listenEvents}
	ev.Fd, ev.Pad = token(kindListener, slot, 0)
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, l.fd, &ev)
}

// removeListener stops accepting on l; its owner closes it after every
// worker removed it.
func (w *worker) removeListener(l *listener) {
	for i, x := range w.listeners {
		if x != nil && x.shared == l {
			if !x.paused {
				unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, l.fd, nil)
			}
			w.listeners[i] = nil
		}
	}
}

// accept takes one connection waiting on l; epoll reports l again while
// more wait.
func (w *worker) accept(l *listener) {
	for {
		fd, err := sysAccept(l.fd)
		switch err {
		case nil:
			w.open(l, fd)
			return
		case unix.EAGAIN, unix.ECONNABORTED:
			return // another worker took it, or the client left
		case unix.EINTR:
			continue
		}
		// Out of file descriptors and the like: the connections wait in
		// the backlog; stop watching (epoll would report them at once,
		// again and again) and try again a little later.
		w.p.opts.Log.Warn("accept failed", "service", l.svc.Name, "err", err)
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, l.fd, nil)
		l.paused = true
		w.retry = w.now.Add(acceptPause)
		return
	}
}

// open starts a connection accepted on l.
func (w *worker) open(l *listener, fd int) {
	var slot uint32
	if n := len(w.freeSlots); n > 0 {
		slot = w.freeSlots[n-1]
		w.freeSlots = w.freeSlots[:n-1]
	} else {
		slot = uint32(len(w.conns))
		w.conns = append(w.conns, nil)
	}
	c := w.newConn(slot, l.svc, fd)
	w.conns[slot] = c
	w.live++
	if c.early() {
		c.dial()
	}
}

// release frees a connection's slot once it ended, and keeps the
// connection for the next one.
func (w *worker) release(c *conn) {
	w.conns[c.slot] = nil
	w.freeSlots = append(w.freeSlots, c.slot)
	w.live--
	if len(w.idle) < maxSpare {
		w.idle = append(w.idle, c)
	}
}

// watch adds a connection's socket to the worker's epoll.
func (w *worker) watch(c *conn, client bool, fd int) error {
	kind := kindBackend
	if client {
		kind = kindClient
	}
	ev := unix.EpollEvent{Events: connEvents}
	ev.Fd, ev.Pad = token(kind, c.slot, c.gen)
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// getBuf returns a buffer for bytes a writer could not take yet.
func (w *worker) getBuf() []byte {
	if n := len(w.spare); n > 0 {
		b := w.spare[n-1]
		w.spare = w.spare[:n-1]
		return b
	}
	return make([]byte, bufSize)
}

func (w *worker) putBuf(b []byte) {
	if len(w.spare) < maxSpare {
		w.spare = append(w.spare, b)
	}
}

// closeAll ends every connection at once (Shutdown's grace ran out).
func (w *worker) closeAll() {
	for _, c := range w.conns {
		if c != nil {
			c.close()
		}
	}
}

func (w *worker) close() {
	for _, pp := range w.pipes {
		pp.close()
	}
	w.pipes = nil
	w.mu.Lock()
	defer w.mu.Unlock()
	w.exited = true // under mu: post never writes to a closed descriptor
	unix.Close(w.wakefd)
	unix.Close(w.epfd)
}

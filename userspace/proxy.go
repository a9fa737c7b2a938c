package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/tcpshift/tcpshift/loader/listener"
)

// Defaults for Options.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultAttempts    = 3
)

// Options configure a Proxy.
type Options struct {
	Source Source
	// DialTimeout bounds each connection attempt to an endpoint.
	DialTimeout time.Duration
	// Attempts bounds the endpoints tried for one client connection: on a
	// refused or timed-out dial the proxy tries the subset's next endpoint,
	// then picks again.
	Attempts int
	// InNamespace runs fn where the proxy's sockets must be created (a
	// network namespace); nil runs it in place.
	InNamespace func(fn func() error) error
	Log         *slog.Logger
}

// Service is one frontend the proxy serves.
type Service struct {
	ID       uint32
	Name     string
	Frontend netip.AddrPort
}

// Proxy forwards connections from service frontends to the endpoints their
// tables choose.
type Proxy struct {
	opts      Options
	aff       affinities
	wg        sync.WaitGroup
	mu        sync.Mutex
	listeners map[Service]net.Listener
	conns     map[*net.TCPConn]struct{}
}

// New makes a proxy; Listen starts serving.
func New(opts Options) *Proxy {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.InNamespace == nil {
		opts.InNamespace = func(fn func() error) error { return fn() }
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{opts: opts, listeners: map[Service]net.Listener{}, conns: map[*net.TCPConn]struct{}{}}
}

// Listen binds svc's frontend and serves it until Shutdown or until Sync
// drops it. Listening again on a service already served does nothing.
func (p *Proxy) Listen(svc Service) error {
	p.mu.Lock()
	_, serving := p.listeners[svc]
	p.mu.Unlock()
	if serving {
		return nil
	}
	var ln net.Listener
	err := p.opts.InNamespace(func() (err error) {
		ln, err = listener.Listen("tcp", svc.Frontend.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("service %s: listen on %s: %w", svc.Name, svc.Frontend, err)
	}
	p.mu.Lock()
	p.listeners[svc] = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go p.serve(svc, ln.(*net.TCPListener))
	p.opts.Log.Info("proxy listening", "service", svc.Name, "listen", svc.Frontend.String())
	return nil
}

// Sync serves exactly svcs: it stops listening for services not in it
// (their open connections go on) and listens for new ones. It stops at the
// first frontend it cannot bind.
func (p *Proxy) Sync(svcs []Service) error {
	want := map[Service]bool{}
	for _, s := range svcs {
		want[s] = true
	}
	p.mu.Lock()
	for s, ln := range p.listeners {
		if !want[s] {
			ln.Close()
			delete(p.listeners, s)
			p.opts.Log.Info("proxy stopped listening", "service", s.Name, "listen", s.Frontend.String())
		}
	}
	p.mu.Unlock()
	for _, s := range svcs {
		if err := p.Listen(s); err != nil {
			return err
		}
	}
	return nil
}

func (p *Proxy) serve(svc Service, ln *net.TCPListener) {
	defer p.wg.Done()
	for {
		c, err := ln.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: back off, go on.
			p.opts.Log.Warn("accept failed", "service", svc.Name, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(svc, c)
	}
}

func (p *Proxy) handle(svc Service, client *net.TCPConn) {
	defer p.wg.Done()
	defer p.untrack(client)
	backend, ep, err := p.dial(svc, client)
	if err != nil {
		p.opts.Log.Warn("connection refused", "service", svc.Name, "client", client.RemoteAddr(), "err", err)
		if err := p.opts.Source.Refused(svc.ID); err != nil {
			p.opts.Log.Warn("count refused connection", "service", svc.Name, "err", err)
		}
		client.SetLinger(0) // a reset, as the kernel paths refuse
		client.Close()
		return
	}
	if !p.track(backend) {
		backend.Close()
		client.Close()
		return
	}
	defer p.untrack(backend)
	// Values, not strings: slog formats them only if debug is on.
	p.opts.Log.Debug("forwarding", "service", svc.Name, "client", client.RemoteAddr(), "endpoint", ep.Addr)
	forward(client, backend)
	client.Close()
	backend.Close()
}

// errNoEndpoint is a table that refuses every connection.
var errNoEndpoint = errors.New("no endpoint has weight")

// dial connects to the endpoint the table picks: the client's affinity
// first, then the chosen subset's endpoints from their turn, then another
// pick, within Attempts dials.
func (p *Proxy) dial(svc Service, client *net.TCPConn) (*net.TCPConn, Endpoint, error) {
	t, err := p.opts.Source.Table(svc.ID)
	if err != nil {
		return nil, Endpoint{}, err
	}
	now := time.Now()
	var key affinityKey
	sticky := t.AffinityTTL() > 0
	if sticky {
		key = affinityKey{service: svc.ID, client: client.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
		if ep, ok := p.aff.get(t, key, now); ok {
			if c, err := p.dialOne(ep); err == nil {
				return c, ep, nil
			}
		}
	}
	var lastErr error = errNoEndpoint
	for tried := 0; tried < p.opts.Attempts; {
		subset, order, ok := t.Pick()
		if !ok {
			return nil, Endpoint{}, lastErr
		}
		for _, ep := range order {
			if tried == p.opts.Attempts {
				break
			}
			tried++
			c, err := p.dialOne(ep)
			if err == nil {
				if sticky {
					p.aff.set(t, key, subset, ep.ID, now)
				}
				return c, ep, nil
			}
			lastErr = err
			p.opts.Log.Debug("endpoint failed", "service", svc.Name, "endpoint", ep.Addr, "err", err)
		}
	}
	return nil, Endpoint{}, fmt.Errorf("%d attempts: %w", p.opts.Attempts, lastErr)
}

func (p *Proxy) dialOne(ep Endpoint) (*net.TCPConn, error) {
	d := net.Dialer{
		Timeout: p.opts.DialTimeout,
		// Tag the socket before connect(), so sockops counts it once
		// established. Accounting never blocks traffic.
		Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				if err := p.opts.Source.Tag(int(fd), ep); err != nil {
					p.opts.Log.Debug("tag connection", "endpoint", ep.Addr, "err", err)
				}
			})
		},
	}
	d.SetMultipathTCP(false) // plain TCP: splice needs it
	var c net.Conn
	err := p.opts.InNamespace(func() (err error) {
		c, err = d.Dial("tcp", ep.Addr.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// track registers an open connection for Shutdown; false once shutting down.
func (p *Proxy) track(c *net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// Shutdown stops accepting, lets open connections finish until ctx is done,
// then closes the rest, and returns when every goroutine has ended.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	for s, ln := range p.listeners {
		ln.Close()
		delete(p.listeners, s)
	}
	p.mu.Unlock()

	idle := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(idle)
	}()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = fmt.Errorf("connections still open: %w", ctx.Err())
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
		<-idle
	}
	p.mu.Lock()
	p.conns = nil
	p.mu.Unlock()
	return err
}

package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"time"
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
	// Workers is how many event loops serve the connections; 0 is
	// DefaultWorkers. The proxy raises GOMAXPROCS to Workers+1 when it
	// is lower: a worker waiting in epoll_wait holds one of Go's
	// processors, and while every processor is held the runtime keeps
	// taking them back and handing them over (2 workers on 2 processors:
	// 90 µs of CPU per short connection, against 77 with a third).
	Workers int
	// InNamespace runs fn where the proxy's sockets must be created (a
	// network namespace); nil runs it in place. Each worker runs its
	// whole loop inside it, so a connect pays no namespace switch.
	InNamespace func(fn func() error) error
	Log         *slog.Logger
}

// DefaultWorkers leaves one of Go's processors (GOMAXPROCS) to the rest
// of the process, at least 1. On the benchmark's 2 CPUs one worker served
// short connections with less CPU than two (64-74 against 75-77 µs each)
// and at least as fast (against HAProxy's best, per repetition: 1.06 and
// 0.89 against 1.03 and 0.81 in two batches of 15 interleaved runs).
func DefaultWorkers() int {
	return max(1, procs-1)
}

// procs is GOMAXPROCS before any proxy raised it.
var procs = runtime.GOMAXPROCS(0)

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
	mu        sync.Mutex
	listeners map[Service]*listener
	workers   []*worker
	running   sync.WaitGroup // the workers
	shut      bool
}

// New makes a proxy; Listen starts serving.
func New(opts Options) *Proxy {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers()
	}
	if opts.InNamespace == nil {
		opts.InNamespace = func(fn func() error) error { return fn() }
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{opts: opts, listeners: map[Service]*listener{}}
}

// errShutDown is Listen after Shutdown.
var errShutDown = errors.New("proxy is shut down")

// Listen binds svc's frontend and serves it until Shutdown or until Sync
// drops it. Listening again on a service already served does nothing.
func (p *Proxy) Listen(svc Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return errShutDown
	}
	if _, serving := p.listeners[svc]; serving {
		return nil
	}
	l, err := listen(svc, p.opts.InNamespace)
	if err != nil {
		return fmt.Errorf("service %s: listen on %s: %w", svc.Name, svc.Frontend, err)
	}
	if err := p.start(); err != nil {
		l.close()
		return err
	}
	p.listeners[svc] = l
	for _, w := range p.workers {
		w.post(func(w *worker) { w.addListener(l) })
	}
	p.opts.Log.Info("proxy listening", "service", svc.Name, "listen", svc.Frontend.String(), "workers", len(p.workers))
	return nil
}

// start starts the workers with the first listener.
func (p *Proxy) start() error {
	if p.workers != nil {
		return nil
	}
	if runtime.GOMAXPROCS(0) <= p.opts.Workers {
		runtime.GOMAXPROCS(p.opts.Workers + 1)
	}
	for range p.opts.Workers {
		w, err := newWorker(p)
		if err != nil {
			for _, w := range p.workers {
				w.post(func(w *worker) { w.stopping = true })
			}
			p.workers = nil
			return fmt.Errorf("start proxy worker: %w", err)
		}
		w.done = make(chan struct{})
		p.workers = append(p.workers, w)
		p.running.Add(1)
		go func() {
			defer p.running.Done()
			defer close(w.done)
			ran := false
			err := p.opts.InNamespace(func() error {
				ran = true
				w.run()
				return nil
			})
			if !ran {
				p.opts.Log.Error("proxy worker cannot start", "err", err)
				w.close()
			}
		}()
	}
	return nil
}

// unlisten stops every worker accepting on l, then closes it: no worker
// can accept on a descriptor number the process gave to another socket.
func (p *Proxy) unlisten(l *listener) {
	for _, w := range p.workers {
		removed := make(chan struct{})
		w.post(func(w *worker) {
			w.removeListener(l)
			close(removed)
		})
		select {
		case <-removed:
		case <-w.done:
		}
	}
	l.close()
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
	for s, l := range p.listeners {
		if !want[s] {
			p.unlisten(l)
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

// Serving lists the services the proxy listens for.
func (p *Proxy) Serving() []Service {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Service, 0, len(p.listeners))
	for s := range p.listeners {
		out = append(out, s)
	}
	return out
}

// Shutdown stops accepting, lets open connections finish until ctx is done,
// then closes the rest, and returns when every worker has ended.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shut = true
	for s, l := range p.listeners {
		p.unlisten(l)
		delete(p.listeners, s)
	}
	workers := p.workers
	p.mu.Unlock()
	for _, w := range workers {
		w.post(func(w *worker) { w.stopping = true })
	}

	idle := make(chan struct{})
	go func() {
		p.running.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		for _, w := range workers {
			w.post((*worker).closeAll)
		}
		<-idle
		return fmt.Errorf("connections still open: %w", ctx.Err())
	}
}

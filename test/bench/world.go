package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
)

// The two-backend 80/20 service every path serves: iperf3 servers for
// throughput, tcp-echo servers for short connections.
const (
	iperfV1, iperfV2 = "127.0.0.1:5201", "127.0.0.1:5202"
	echoV1, echoV2   = "127.0.0.1:9001", "127.0.0.1:9002"
)

// path is one way from the client to the service.
type path struct {
	name  string
	host  string // frontend address, iperf3 on :5200, echo on :9000; "" for the direct paths
	note  string
	setup func(w *world) error
	// flip sets the echo service's weights (v1, v2); nil when the path can
	// only change weights by reloading its config.
	flip func(w *world, v1, v2 uint64) error
	// reload changes the weights by rewriting the config and reloading.
	reload func(w *world, v1, v2 uint64) error
	// tcpshift mode, "" for the others
	mode string
	// split: a direct path whose client itself sends 4 of every 5
	// connections to v1 and 1 to v2, the service's 80/20.
	split bool
	// noAcct: the tcpshift services of the path say accounting: false.
	noAcct bool
	// skip says why the path is not measured; "" when it is.
	skip string
}

// direct reports whether the client goes to the backends itself.
func (p *path) direct() bool { return p.host == "" }

// service is the tcpshift services' name after "echo-" and "iperf-".
func (p *path) service() string { return strings.TrimPrefix(p.name, "tcpshift-") }

// iperfTarget returns where repetition rep's iperf3 runs go, and which
// backend that is when the client picks it ("" when the path does).
// iperf3 cannot split one test over two servers, and the tcpshift paths
// keep a whole test on one backend too (affinity), so the split direct
// splits by test: the fifth of every five repetitions goes to v2.
func (p *path) iperfTarget(rep int) (host, port, who string) {
	switch {
	case p.split && rep%5 == 4:
		return "127.0.0.1", "5202", "v2"
	case p.direct():
		return "127.0.0.1", "5201", "v1"
	}
	return p.host, "5200", ""
}

// echoTargets returns the addresses the load generator dials and their
// weights: the frontend, or the backends themselves for the direct paths.
func (p *path) echoTargets() (addrs []string, weights []int) {
	switch {
	case p.split:
		return []string{echoV1, echoV2}, []int{4, 1}
	case p.direct():
		return []string{echoV1}, []int{1}
	}
	return []string{p.echoAddr()}, []int{1}
}

func (p *path) echoAddr() string { return p.host + ":9000" }

// allPaths are every path the benchmark knows; paths are those -paths
// picked. tcpshift serves the services of all of them whichever are
// measured, so that every path runs with the same programs attached.
var allPaths = []*path{
	{name: "direct", split: true, note: "the client itself sends 4 of every 5 connections to v1, 1 to v2: the fair limit"},
	{name: "direct-1backend", note: "client straight to v1 only: a reference, not the limit"},
	{name: "tcpshift-lookup", host: "127.0.0.100", mode: "lookup", flip: tcpshiftFlip("lookup"), note: "sk_lookup"},
	{name: "tcpshift-lookup-noacct", host: "127.0.0.105", mode: "lookup", noAcct: true, flip: tcpshiftFlip("lookup-noacct"), note: "sk_lookup, accounting: false"},
	{name: "tcpshift-connect", host: "10.96.0.10", mode: "connect", flip: tcpshiftFlip("connect"), note: "cgroup connect4"},
	{name: "tcpshift-connect-noacct", host: "10.96.0.11", mode: "connect", noAcct: true, flip: tcpshiftFlip("connect-noacct"), note: "cgroup connect4, accounting: false"},
	{name: "tcpshift-proxy", host: "127.0.0.101", mode: "proxy", flip: tcpshiftFlip("proxy"), setup: startProxy, note: "userspace, splice"},
	{name: "haproxy", host: "127.0.0.102", flip: haproxyFlip, setup: startHAProxy(false), note: "tcp mode, roundrobin, nbthread 2"},
	{name: "haproxy-splice", host: "127.0.0.103", flip: haproxyFlip, setup: startHAProxy(true), note: "as haproxy, option splice-auto"},
	{name: "nginx", host: "127.0.0.104", reload: nginxReload, setup: startNginx, note: "stream, workers = cores"},
}

var paths = allPaths

// world is the benchmark's private network namespace, bpffs and cgroup,
// with the backends running.
type world struct {
	s        settings
	dir      string
	ns       *loader.Namespace
	bpffs    string
	cgroup   string
	restore  func() error
	tg       *loader.Target
	cfg      *config.Config
	procs    []*exec.Cmd
	backends []*exec.Cmd // the tcp-echo servers
	cur      *path       // the path being set up, for its setup function
	sockets  map[string]string
	servers  map[string]*exec.Cmd // the proxy process of a path
}

// makePrivate gives w its own directory, network namespace, bpffs and
// cgroup, all named after name; close removes them.
func (w *world) makePrivate(name string) (err error) {
	if w.dir, err = os.MkdirTemp("", name+"-"); err != nil {
		return err
	}
	if w.ns, err = loader.NewNamespace(); err != nil {
		return err
	}
	w.bpffs = filepath.Join(w.dir, "bpffs")
	if err := os.Mkdir(w.bpffs, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpffs", w.bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	w.cgroup, err = loader.TempCgroup(name)
	return err
}

func newWorld(s settings) (_ *world, err error) {
	w := &world{s: s, sockets: map[string]string{}, servers: map[string]*exec.Cmd{}}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if err := w.makePrivate("tcpshift-bench"); err != nil {
		return nil, err
	}
	// Every process of the benchmark runs in the cgroup: the connect hooks
	// rewrite its clients' connect() calls, sockops sees its sockets, and
	// its cpu.stat is the CPU a measurement costs. The benchmark itself
	// joins, so that whatever it starts (servers, proxies, the load
	// generator, iperf3 clients) is born inside.
	if _, err := cgroupCPU(w.cgroup); err != nil {
		return nil, err
	}
	if w.restore, err = loader.JoinCgroup(w.cgroup); err != nil {
		return nil, err
	}
	// Short connections by the hundred thousand: a wide port range, and a
	// bounded TIME_WAIT table so that paths measured later do not pay for
	// the sockets earlier paths left behind.
	for file, value := range map[string]string{
		"/proc/sys/net/ipv4/ip_local_port_range": "1024 65535",
		"/proc/sys/net/ipv4/tcp_max_tw_buckets":  "4096",
	} {
		if err := w.ns.Do(func() error { return os.WriteFile(file, []byte(value), 0o644) }); err != nil {
			return nil, fmt.Errorf("sysctl %s: %w", file, err)
		}
	}
	for _, b := range []struct{ addr, port string }{{"127.0.0.1", "5201"}, {"127.0.0.1", "5202"}} {
		if err := w.start("iperf3", "-s", "--forceflush", "-B", b.addr, "-p", b.port); err != nil {
			return nil, err
		}
	}
	for _, b := range []struct{ addr, prefix string }{{echoV1, "one"}, {echoV2, "two"}} {
		if err := w.start(filepath.Join(w.s.bin, "tcp-echo"), "-l", b.addr, b.prefix); err != nil {
			return nil, err
		}
		w.backends = append(w.backends, w.procs[len(w.procs)-1])
	}
	for _, a := range []string{iperfV1, iperfV2, echoV1, echoV2} {
		if err := w.waitListening(a); err != nil {
			return nil, err
		}
	}
	if w.tg, err = loader.Open(w.ns.Path(), w.bpffs, w.cgroup); err != nil {
		return nil, err
	}
	if w.cfg, err = loadRoutes(filepath.Join(w.dir, "routes.yaml")); err != nil {
		return nil, err
	}
	if err := w.apply(); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if p.setup == nil || p.skip != "" {
			continue
		}
		w.cur = p
		if err := p.setup(w); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		w.servers[p.name] = w.procs[len(w.procs)-1]
		if err := w.waitListening(p.echoAddr()); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", p.name, err, w.lastLog())
		}
	}
	return w, nil
}

// apply (re)applies the tcpshift routes: lookup mode must register
// iperf3's listener again after every test, as iperf3 reopens it. An
// apply once found no listener for tcp-echo, which was serving all along,
// right after an iperf3 test (a listing of the listeners taken while one of
// them changes?), so an apply that finds no listener tries again.
func (w *world) apply() error {
	for try := 1; ; try++ {
		_, err := w.tg.Apply(loader.Fixed(w.cfg), loader.ApplyOptions{})
		if err == nil || try == 3 || !errors.Is(err, listener.ErrNotListening) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs a program inside the namespace until the world closes.
func (w *world) start(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	log, err := os.Create(filepath.Join(w.dir, filepath.Base(name)+fmt.Sprint(len(w.procs))+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := w.ns.Do(cmd.Start); err != nil { // the child inherits the thread's namespace
		return fmt.Errorf("start %s: %w", name, err)
	}
	w.procs = append(w.procs, cmd)
	return nil
}

// lastLog returns the output of the process started last, to explain why
// it is not serving.
func (w *world) lastLog() string {
	if len(w.procs) == 0 {
		return ""
	}
	p := w.procs[len(w.procs)-1]
	b, _ := os.ReadFile(filepath.Join(w.dir, filepath.Base(p.Path)+fmt.Sprint(len(w.procs)-1)+".log"))
	return string(b)
}

func (w *world) dial(addr string) (c net.Conn, err error) {
	err = w.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	return c, err
}

func (w *world) waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := w.dial(addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *world) close() {
	for _, p := range w.procs {
		p.Process.Signal(unix.SIGTERM)
	}
	for _, p := range w.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	var errs []error
	if w.tg != nil {
		_, err := w.tg.Down()
		errs = append(errs, err)
		w.tg.Close()
	}
	if w.restore != nil {
		errs = append(errs, w.restore())
	}
	if w.cgroup != "" {
		errs = append(errs, removeCgroup(w.cgroup))
	}
	if w.bpffs != "" {
		unix.Unmount(w.bpffs, unix.MNT_DETACH)
	}
	if w.ns != nil {
		w.ns.Close()
	}
	if w.dir != "" {
		os.RemoveAll(w.dir)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cleanup: %v\n", err)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/userspace"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run Istio's TCP traffic-shifting task in a private network namespace",
		Description: "Starts tcp-echo v1 (replies start with \"one\") and v2 (\"two\"), routes 100% to v1,\n" +
			"then 80/20, then 100% to v2, sending 10 connections at each step, and waits\n" +
			"until v1 has drained. Everything happens in a new network namespace with its\n" +
			"own bpffs and cgroup and is removed at the end.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "lookup", Usage: "data path to show: lookup (sk_lookup), connect (cgroup connect4/6) or proxy (userspace)"},
			&cli.BoolFlag{Name: "istio", Usage: "drive the task with Istio's own YAML (examples/istio): Gateway, DestinationRule, VirtualService, and where v1 and v2 run as ServiceEntry and WorkloadEntries"},
		},
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			mode := c.String("mode")
			if mode != "lookup" && mode != "connect" && mode != "proxy" {
				return fmt.Errorf("--mode %q: want lookup, connect or proxy", mode)
			}
			if c.Bool("istio") && c.IsSet("mode") {
				return errors.New("--istio and --mode: the Istio task's gateway port is served in the mode tcpshift picks (lookup here); give one of them")
			}
			return runDemo(c.App.Writer, mode, c.Bool("istio"))
		},
	}
}

const (
	demoFrontend = "127.0.0.100:9000"
	demoConfig   = `services:
- name: tcp-echo
  listen: 127.0.0.100:9000
  mode: %s
  subsets:
    v1: {endpoints: [127.0.0.1:9001]}
    v2: {endpoints: [127.0.0.1:9002]}
  route:
%s`
)

type demo struct {
	w        io.Writer
	mode     string
	istio    bool
	frontend string
	cgroup   string
	ns       *loader.Namespace
	tg       *loader.Target
	dir      string
}

func runDemo(w io.Writer, mode string, useIstio bool) (err error) {
	d := &demo{w: w, mode: mode, istio: useIstio, frontend: demoFrontend}
	if useIstio {
		d.frontend = "127.0.0.1:31400" // the gateway port of Istio's task
	}
	fmt.Fprintln(w, "== tcpshift demo: Istio's TCP traffic shifting, on one host, in the kernel ==")
	if d.ns, err = loader.NewNamespace(); err != nil {
		return err
	}
	defer d.ns.Close()
	if d.dir, err = os.MkdirTemp("", "tcpshift-demo-"); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(d.dir)
	bpffs := filepath.Join(d.dir, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("demo: mount private bpffs: %w", err)
	}
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	fmt.Fprintf(w, "Everything runs in a new network namespace with a private bpffs; nothing is left behind.\n\n")

	// The hooks see the sockets of processes in the cgroup: this demo's
	// clients (connect), backends (sockops accounting) and proxy.
	cgroup, err := loader.TempCgroup("tcpshift-demo")
	if err != nil {
		return err
	}
	defer os.Remove(cgroup)
	d.cgroup = cgroup
	restore, err := loader.JoinCgroup(cgroup)
	if err != nil {
		return err
	}
	defer restore()

	for _, b := range []struct{ addr, prefix, subset string }{
		{"127.0.0.1:9001", "one", "v1"},
		{"127.0.0.1:9002", "two", "v2"},
	} {
		ln, err := d.listen(b.addr)
		if err != nil {
			return err
		}
		defer ln.Close()
		go echo.Serve(ln, b.prefix)
		fmt.Fprintf(w, "$ tcp-echo -l %s %s        # subset %s\n", b.addr, b.prefix, b.subset)
	}
	if useIstio {
		return d.runIstio()
	}

	if d.tg, err = loader.Open(d.ns.Path(), bpffs, cgroup); err != nil {
		return err
	}
	defer d.tg.Close()
	defer func() {
		_, downErr := d.tg.Down()
		fmt.Fprintln(w, "\n$ tcpshift down")
		if downErr == nil {
			fmt.Fprintln(w, "tcpshift removed")
		}
		err = errors.Join(err, downErr)
	}()

	fmt.Fprintln(w, "\nStep 1: route 100% of the traffic to v1")
	if err := d.apply("  - {subset: v1, weight: 100}\n"); err != nil {
		return err
	}
	if mode == "proxy" {
		stop, err := d.proxy()
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := d.send(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nStep 2: shift 20% of the traffic to v2")
	if err := d.apply("  - {subset: v1, weight: 80}\n  - {subset: v2, weight: 20}\n"); err != nil {
		return err
	}
	if err := d.send(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\n$ tcpshift status")
	st, err := d.tg.Status("")
	if err != nil {
		return err
	}
	if err := printStatus(w, st, "table"); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nStep 3: shift 100% of the traffic to v2, live, while a v1 client stays connected")
	// After two full rounds of 80/20 the next connection is v1's.
	long, err := d.dial()
	if err != nil {
		return err
	}
	defer long.Close()
	reply, err := echo.Ask(long, "still here")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(w, "$ nc %s    # stays open\nstill here\n%s\n", strings.Replace(d.frontend, ":", " ", 1), reply)
	fmt.Fprintln(w, "$ tcpshift set-weight tcp-echo v1=0 v2=100")
	if _, err := d.tg.SetWeights("tcp-echo", []loader.Weight{{Subset: "v1"}, {Subset: "v2", Weight: 100}}); err != nil {
		return err
	}
	if err := d.send(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nStep 4: wait until v1 has drained (the open v1 connection closes after a second)")
	fmt.Fprintln(w, "$ tcpshift wait-drained tcp-echo v1")
	closer := time.AfterFunc(time.Second, func() { long.Close() })
	defer closer.Stop()
	return waitDrained(w, d.tg, "tcp-echo", "v1", 10*time.Second)
}

// proxy runs the userspace proxy for the demo's service, as `tcpshift
// proxy` would, until stop is called.
func (d *demo) proxy() (stop func(), err error) {
	set, err := d.tg.Maps()
	if err != nil {
		return nil, err
	}
	svc, ok, err := set.Service("tcp-echo")
	if err != nil || !ok {
		set.Close()
		return nil, errors.Join(err, errors.New("demo: tcp-echo not applied"))
	}
	p := userspace.New(userspace.Options{Source: userspace.NewKernelSource(set), InNamespace: d.ns.Do})
	if err := p.Listen(userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend}); err != nil {
		set.Close()
		return nil, err
	}
	fmt.Fprintln(d.w, "$ tcpshift proxy -f routes.yaml &")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Shutdown(ctx)
		set.Close()
	}, nil
}

func (d *demo) dial() (c net.Conn, err error) {
	err = d.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", d.frontend, 2*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("demo: connect to %s: %w", d.frontend, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

func (d *demo) listen(addr string) (ln net.Listener, err error) {
	err = d.ns.Do(func() error {
		ln, err = listener.Listen("tcp", addr)
		return err
	})
	return ln, err
}

func (d *demo) apply(route string) error {
	text := fmt.Sprintf(demoConfig, d.mode, route)
	path := filepath.Join(d.dir, "routes.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(d.w, "$ cat routes.yaml\n%s$ tcpshift apply -f routes.yaml\n", indent(text))
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	changes, err := d.tg.Apply(loader.Fixed(cfg), loader.ApplyOptions{})
	printChanges(d.w, changes, false)
	return err
}

// send opens 10 connections to the frontend, each sending the date, and
// prints the replies and how many each version gave.
func (d *demo) send() error {
	fmt.Fprintf(d.w, "\n$ for i in $(seq 10); do date | nc -N %s; done\n", strings.Replace(d.frontend, ":", " ", 1))
	counts := map[string]int{}
	for range 10 {
		c, err := d.dial()
		if err != nil {
			return err
		}
		reply, err := echo.Ask(c, time.Now().Format(time.UnixDate))
		c.Close()
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if d.mode == "connect" {
			// getpeername shows the frontend, not the backend connect() went to.
			fmt.Fprintf(d.w, "%s    (getpeername: %s)\n", reply, c.RemoteAddr())
		} else {
			fmt.Fprintln(d.w, reply)
		}
		who, _, _ := strings.Cut(reply, " ")
		counts[who]++
	}
	fmt.Fprintf(d.w, "=> one (v1): %d, two (v2): %d\n", counts["one"], counts["two"])
	return nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader"
)

// tcpshiftRoutes is tcpshift's config: the service once per tcpshift
// path, those with accounting off left out unless withNoAcct. iperf3 needs
// its control and data connections on one backend: the iperf3 services
// keep a client on its endpoint for 1 s, and runs are more than 1 s apart,
// so runs still split.
func tcpshiftRoutes(withNoAcct bool) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, p := range allPaths {
		if p.mode == "" || p.noAcct && !withNoAcct {
			continue
		}
		acct := ""
		if p.noAcct {
			acct = "  accounting: false\n"
		}
		fmt.Fprintf(&b, `- name: iperf-%[1]s
  listen: %[2]s:5200
  mode: %[3]s
%[4]s  affinity: {key: client, ttl: 1s}
  subsets:
    v1: {endpoints: [%[5]s]}
    v2: {endpoints: [%[6]s]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
- name: echo-%[1]s
  listen: %[2]s:9000
  mode: %[3]s
%[4]s  subsets:
    v1: {endpoints: [%[7]s]}
    v2: {endpoints: [%[8]s]}
  route:
  - {subset: v1, weight: 80}
  - {subset: v2, weight: 20}
`, p.service(), p.host, p.mode, acct, iperfV1, iperfV2, echoV1, echoV2)
	}
	return b.String()
}

// loadRoutes writes tcpshift's config to file and loads it. A tcpshift
// whose config does not know `accounting: false` yet costs the paths that
// need it, not the whole run: they are skipped, with the config's error.
func loadRoutes(file string) (*config.Config, error) {
	write := func(withNoAcct bool) (*config.Config, error) {
		if err := os.WriteFile(file, []byte(tcpshiftRoutes(withNoAcct)), 0o600); err != nil {
			return nil, err
		}
		return config.Load(file)
	}
	cfg, err := write(true)
	if err == nil {
		return cfg, nil
	}
	cfg, werr := write(false)
	if werr != nil {
		return nil, fmt.Errorf("tcpshift config: %w", werr)
	}
	for _, p := range allPaths {
		if p.noAcct {
			p.skip = fmt.Sprintf("tcpshift's config refuses `accounting: false` (%v)", err)
		}
	}
	return cfg, nil
}

// tcpshiftFlip sets the weights of the echo service of a tcpshift path.
func tcpshiftFlip(service string) func(w *world, v1, v2 uint64) error {
	return func(w *world, v1, v2 uint64) error {
		_, err := w.tg.SetWeights("echo-"+service, []loader.Weight{{Subset: "v1", Weight: v1}, {Subset: "v2", Weight: v2}})
		return err
	}
}

// startProxy runs `tcpshift proxy` as its own process, as users run it.
func startProxy(w *world) error {
	return w.start(filepath.Join(w.s.bin, "tcpshift"), "--bpffs", w.bpffs, "--cgroup", w.cgroup,
		"proxy", "-f", filepath.Join(w.dir, "routes.yaml"), "--log-level", "warn")
}

// startHAProxy runs HAProxy 2.x as its users tune it for TCP: one thread per
// core, roundrobin with the weights, a stick table on the source address
// for iperf3, and optionally kernel splicing.
func startHAProxy(splice bool) func(w *world) error {
	return func(w *world) error {
		p := w.cur
		sock := filepath.Join(w.dir, p.name+".sock")
		w.sockets[p.name] = sock
		spliceOpt := ""
		if splice {
			spliceOpt = "  option splice-auto\n"
		}
		cfg := fmt.Sprintf(`global
  nbthread %[1]d
  stats socket %[2]s mode 600 level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
%[3]sfrontend iperf
  bind %[4]s:5200
  default_backend iperf
backend iperf
  balance roundrobin
  stick-table type ip size 100k expire 1s
  stick on src
  server v1 %[5]s weight 80
  server v2 %[6]s weight 20
frontend echo
  bind %[4]s:9000
  default_backend echo
backend echo
  balance roundrobin
  server v1 %[7]s weight 80
  server v2 %[8]s weight 20
`, cores(), sock, spliceOpt, p.host, iperfV1, iperfV2, echoV1, echoV2)
		file := filepath.Join(w.dir, p.name+".cfg")
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			return err
		}
		return w.start("haproxy", "-db", "-f", file)
	}
}

// haproxyFlip changes the weights through HAProxy's runtime API.
func haproxyFlip(w *world, v1, v2 uint64) error {
	sock := w.sockets[w.cur.name]
	c, err := net.Dial("unix", sock)
	if err != nil {
		return fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "set weight echo/v1 %d; set weight echo/v2 %d\n", v1, v2); err != nil {
		return err
	}
	reply := make([]byte, 256)
	n, _ := c.Read(reply)
	if s := strings.TrimSpace(string(reply[:n])); s != "" {
		return fmt.Errorf("haproxy runtime API: %s", s)
	}
	return nil
}

// startNginx runs nginx's stream module: a worker per core, the weighted
// round-robin upstream for echo, and a consistent hash on the source for
// iperf3 (open source nginx has no sticky sessions for streams).
func startNginx(w *world) error {
	if err := writeNginxConfig(w, 80, 20); err != nil {
		return err
	}
	return w.start("nginx", "-p", w.dir, "-e", filepath.Join(w.dir, "nginx-error.log"), "-c", filepath.Join(w.dir, "nginx.conf"), "-g", "daemon off;")
}

func writeNginxConfig(w *world, v1, v2 uint64) error {
	host := "127.0.0.104"
	server := func(addr string, weight uint64) string {
		if weight == 0 {
			return fmt.Sprintf("server %s down;", addr)
		}
		return fmt.Sprintf("server %s weight=%d;", addr, weight)
	}
	cfg := fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes %[1]d;
pid %[2]s/nginx.pid;
events { worker_connections 65536; }
stream {
  upstream iperf { hash $remote_addr consistent; server %[4]s weight=80; server %[5]s weight=20; }
  upstream echo { %[6]s %[7]s }
  server { listen %[3]s:5200; proxy_pass iperf; }
  server { listen %[3]s:9000; proxy_pass echo; }
}
`, cores(), w.dir, host, iperfV1, iperfV2, server(echoV1, v1), server(echoV2, v2))
	return os.WriteFile(filepath.Join(w.dir, "nginx.conf"), []byte(cfg), 0o600)
}

// nginxReload changes the weights the only way nginx can: a new config and
// a reload (SIGHUP), after which new workers take over.
func nginxReload(w *world, v1, v2 uint64) error {
	if err := writeNginxConfig(w, v1, v2); err != nil {
		return err
	}
	for _, p := range w.procs {
		if filepath.Base(p.Path) == "nginx" {
			return p.Process.Signal(unix.SIGHUP)
		}
	}
	return fmt.Errorf("nginx is not running")
}

// checkNoAccounting tells when a path that says accounting: false was
// counted all the same (a tcpshift that parses the key but does not act on
// it yet), so that its figures are not taken for accounting off: its echo
// service should show no bytes after the short-connection runs.
func (w *world) checkNoAccounting(p *path) error {
	st, err := w.tg.Status("echo-" + p.service())
	if err != nil {
		return fmt.Errorf("accounting check: %w", err)
	}
	var bytes uint64
	for _, s := range st.Services {
		for _, sub := range s.Subsets {
			bytes += sub.BytesIn + sub.BytesOut
		}
	}
	if bytes > 0 {
		return fmt.Errorf("accounting: false, yet the service counted %d bytes: its figures may be with accounting on", bytes)
	}
	return nil
}

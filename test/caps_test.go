package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/internal/echo"
	"github.com/tcpshift/tcpshift/internal/testenv"
	"github.com/tcpshift/tcpshift/loader"
)

// The DaemonSet's container runs tcpshift as uid 0 with every capability
// dropped but those deploy/daemonset.yaml adds. These tests run the real
// binary the same way: uid 0, the bounding set reduced to exactly that list
// and nothing inheritable, so after execve its permitted and effective sets
// are the list (what runc does for a container). The list is read from the
// manifest, so the manifest and what is tested cannot drift apart.

// capBits names every capability a manifest may list, as Kubernetes spells
// them (without CAP_).
var capBits = map[string]uint{
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"FOWNER": unix.CAP_FOWNER, "FSETID": unix.CAP_FSETID, "KILL": unix.CAP_KILL, "SETGID": unix.CAP_SETGID,
	"SETUID": unix.CAP_SETUID, "SETPCAP": unix.CAP_SETPCAP, "LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_RAW": unix.CAP_NET_RAW, "IPC_LOCK": unix.CAP_IPC_LOCK,
	"IPC_OWNER": unix.CAP_IPC_OWNER, "SYS_MODULE": unix.CAP_SYS_MODULE, "SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "SYS_PACCT": unix.CAP_SYS_PACCT,
	"SYS_ADMIN": unix.CAP_SYS_ADMIN, "SYS_BOOT": unix.CAP_SYS_BOOT, "SYS_NICE": unix.CAP_SYS_NICE,
	"SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "SYS_TIME": unix.CAP_SYS_TIME, "SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG,
	"MKNOD": unix.CAP_MKNOD, "LEASE": unix.CAP_LEASE, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "SETFCAP": unix.CAP_SETFCAP, "MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"MAC_ADMIN": unix.CAP_MAC_ADMIN, "SYSLOG": unix.CAP_SYSLOG, "WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "AUDIT_READ": unix.CAP_AUDIT_READ, "PERFMON": unix.CAP_PERFMON,
	"BPF": unix.CAP_BPF, "CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// daemonSetCaps reads the capabilities deploy/daemonset.yaml grants the
// agent, checking that it drops all others and runs as uid 0.
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../deploy/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						SecurityContext struct {
							RunAsUser    *int `yaml:"runAsUser"`
							Capabilities struct {
								Add  []string `yaml:"add"`
								Drop []string `yaml:"drop"`
							} `yaml:"capabilities"`
						} `yaml:"securityContext"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("deploy/daemonset.yaml: %v", err)
	}
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("deploy/daemonset.yaml: %d containers, want the agent alone", len(cs))
	}
	sc := cs[0].SecurityContext
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Fatalf("deploy/daemonset.yaml: drop %v, runAsUser %v; these tests mirror drop [ALL] as uid 0", sc.Capabilities.Drop, sc.RunAsUser)
	}
	if len(sc.Capabilities.Add) == 0 {
		t.Fatal("deploy/daemonset.yaml adds no capability")
	}
	for _, c := range sc.Capabilities.Add {
		if _, ok := capBits[c]; !ok {
			t.Fatalf("deploy/daemonset.yaml adds %q: not a capability name (Kubernetes spells them without CAP_)", c)
		}
	}
	return sc.Capabilities.Add
}

// capsShell runs commands as the DaemonSet's container would: uid 0 with
// only caps, inside the test's network namespace (the pod uses the host's,
// so tcpshift is given no --netns), on the test's bpffs and cgroup.
type capsShell struct {
	t       *testing.T
	env     *testenv.Env
	bin     string
	caps    []string
	disable string // features.DisableEnv for the command
}

// wrap returns argv run under the shell's capabilities.
func (s capsShell) wrap(argv ...string) *exec.Cmd {
	set := "-all"
	for _, c := range s.caps {
		set += ",+" + strings.ToLower(c)
	}
	cmd := exec.Command("setpriv", append([]string{"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=" + set, "--"}, argv...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, features.DisableEnv+"=") })
	cmd.Env = append(cmd.Env, features.DisableEnv+"="+s.disable)
	return cmd
}

func (s capsShell) command(args ...string) *exec.Cmd {
	return s.wrap(append([]string{s.bin, "--bpffs", s.env.BPFFS, "--cgroup", s.env.Cgroup}, args...)...)
}

// start starts cmd inside the namespace.
func (s capsShell) start(cmd *exec.Cmd) {
	s.t.Helper()
	if err := s.env.NS.Do(cmd.Start); err != nil {
		s.t.Fatalf("start %v: %v", cmd.Args, err)
	}
}

// run runs tcpshift with args and returns its combined output.
func (s capsShell) run(args ...string) (string, error) {
	s.t.Helper()
	cmd := s.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	s.start(cmd)
	err := cmd.Wait()
	return out.String(), err
}

// must runs tcpshift with args and fails the test unless it exits 0.
func (s capsShell) must(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("tcpshift %s under %v (%s=%q): %v\n%s", strings.Join(args, " "), s.caps, features.DisableEnv, s.disable, err, out)
	}
	return out
}

func (s capsShell) without(c string) capsShell {
	s.caps = slices.DeleteFunc(slices.Clone(s.caps), func(x string) bool { return x == c })
	return s
}

func (s capsShell) disabling(names ...features.Name) capsShell {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = string(n)
	}
	s.disable = strings.Join(parts, ",")
	return s
}

func (s capsShell) status() loader.Status {
	s.t.Helper()
	var st loader.Status
	out := s.must("status", "-o", "json", "tcp-echo")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		s.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(st.Services) != 1 || len(st.Services[0].Subsets) != 2 {
		s.t.Fatalf("status: want tcp-echo with v1 and v2:\n%s", out)
	}
	return st
}

// newCapsShell builds tcpshift and checks that the wrapper gives exactly
// the DaemonSet's capabilities.
func newCapsShell(t *testing.T, env *testenv.Env) capsShell {
	s := capsShell{t: t, env: env, bin: buildTcpshift(t), caps: daemonSetCaps(t)}
	cmd := s.wrap("cat", "/proc/self/status")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	s.start(cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("setpriv: %v\n%s", err, out.String())
	}
	var want uint64
	for _, c := range s.caps {
		want |= 1 << capBits[c]
	}
	got := map[string]uint64{}
	for _, line := range strings.Split(out.String(), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(k, "Cap") {
			got[k], _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	for _, k := range []string{"CapPrm", "CapEff", "CapBnd"} {
		if got[k] != want {
			t.Fatalf("under setpriv %s is %#x, want %#x (%v)", k, got[k], want, s.caps)
		}
	}
	if got["CapInh"] != 0 || got["CapAmb"] != 0 {
		t.Fatalf("under setpriv CapInh %#x, CapAmb %#x: want none", got["CapInh"], got["CapAmb"])
	}
	t.Logf("DaemonSet capabilities: %v", s.caps)
	return s
}

const capsFrontend = "10.96.0.10:9000" // connectConfig's frontend

// heldConn is a connection answered once by the backend that took it and
// kept open.
func heldConn(t *testing.T, env *testenv.Env) (net.Conn, string) {
	t.Helper()
	c, err := env.Dial(capsFrontend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := echo.Ask(c, "hello")
	if err != nil {
		t.Fatal(err)
	}
	who, _, _ := strings.Cut(reply, " ")
	c.SetDeadline(time.Time{})
	return c, who
}

// wantClosed waits for the peer to close c (or reset it).
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("connection %s still open", c.LocalAddr())
	}
	if err == nil {
		t.Fatalf("connection %s got data, want it closed", c.LocalAddr())
	}
}

func wantOpen(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := echo.Ask(c, "still there?"); err != nil {
		t.Fatalf("connection %s closed: %v", c.LocalAddr(), err)
	}
	c.SetDeadline(time.Time{})
}

func wantCount(t *testing.T, env *testenv.Env, n int, want map[string]int) {
	t.Helper()
	if got := env.Count(capsFrontend, n); !maps.Equal(got, want) {
		t.Fatalf("%d connections: %v, want %v", n, got, want)
	}
}

var capsEndpoint = map[string]string{"one": "10.0.0.2:9001", "two": "10.0.0.2:9002"}

func endpointStatus(t *testing.T, st loader.Status, addr string) loader.EndpointStatus {
	t.Helper()
	for _, sub := range st.Services[0].Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Address == addr {
				return ep
			}
		}
	}
	t.Fatalf("status has no endpoint %s", addr)
	return loader.EndpointStatus{}
}

// Every command an operator runs in the agent's pod, and the ones the agent
// runs itself, under exactly the DaemonSet's capabilities, in connect mode
// (the agent's mode): each does what it does as full root.
func TestCapsDaemonSetCommands(t *testing.T) {
	env := remotePair(t)
	sh := newCapsShell(t, env)
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })

	// doctor: every facility root finds here, the DaemonSet's set finds too.
	var doc struct {
		Facilities []struct {
			Name      features.Name `json:"name"`
			Available bool          `json:"available"`
			Error     string        `json:"error"`
		} `json:"facilities"`
		Missing []features.Name `json:"missing"`
	}
	out := sh.must("doctor", "-o", "json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	if len(doc.Missing) != 0 {
		t.Fatalf("doctor under the DaemonSet's capabilities misses %v", doc.Missing)
	}
	for _, f := range doc.Facilities {
		if root := features.Check(f.Name); (root == nil) != f.Available {
			t.Errorf("doctor: %s available %v under the DaemonSet's capabilities (%s), but %v as root (%v)", f.Name, f.Available, f.Error, root == nil, root)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// apply, from nothing: the programs load, attach and steer 80/20.
	sh.must("apply", "-f", newConfigFile(t, connectConfig))
	if n := env.CgroupPrograms(); n != 4 {
		t.Fatalf("%d connect/getpeername programs on the cgroup, want 4", n)
	}

	// status: an open connection's live bytes, through the path root takes,
	// and through sock_diag with the iterator off.
	held, who := heldConn(t, env)
	for _, sh := range []capsShell{sh, sh.disabling(features.IterSkStorage)} {
		st := sh.status()
		want := preferredLiveBytes()
		if sh.disable != "" {
			want = loader.LiveBytesSockDiag
		}
		ep := endpointStatus(t, st, capsEndpoint[who])
		if st.LiveBytes != want || ep.Connections != 1 || ep.Active != 1 || ep.BytesIn != askIn || ep.BytesOut != askOut {
			t.Fatalf("status (%s=%q): live bytes %q (%s), %s %+v; want %q, 1 connection, active, %d bytes in, %d out",
				features.DisableEnv, sh.disable, st.LiveBytes, st.LiveBytesUnavailable, ep.Address, ep.Counters, want, askIn, askOut)
		}
	}
	held.Close()
	wantCount(t, env, 10, map[string]int{"one": 8, "two": 2})

	// set-weight
	sh.must("set-weight", "tcp-echo", "v1=50", "v2=50")
	wantCount(t, env, 10, map[string]int{"one": 5, "two": 5})

	// shift, in two short steps, to v2.
	out = sh.must("shift", "tcp-echo", "--to", "v2", "--steps", "50,100", "--interval", "200ms")
	if st := sh.status(); st.Services[0].Subsets[0].Percent != 0 || st.Services[0].Subsets[1].Percent != 100 {
		t.Fatalf("after shift v1 %v%%, v2 %v%%, want 0/100:\n%s", st.Services[0].Subsets[0].Percent, st.Services[0].Subsets[1].Percent, out)
	}
	wantCount(t, env, 10, map[string]int{"two": 10})

	// rebalance: v1's open connections are closed, through the path root
	// takes and through sock_diag SOCK_DESTROY with the iterator off.
	for round, sh := range []capsShell{sh, sh.disabling(features.IterTCP)} {
		sh.must("set-weight", "tcp-echo", "v1=100", "v2=0")
		var conns []net.Conn
		for range 4 {
			c, who := heldConn(t, env)
			if who != "one" {
				t.Fatalf("with v1=100 a connection went to %s", who)
			}
			conns = append(conns, c)
		}
		sh.must("set-weight", "tcp-echo", "v1=0", "v2=100")
		v2conn, who := heldConn(t, env) // stays: rebalance closes v1's only
		if who != "two" {
			t.Fatalf("with v2=100 a connection went to %s", who)
		}
		out := sh.must("rebalance", "tcp-echo", "--subset", "v1", "--over", "1s")
		path := "bpf_sock_destroy"
		if sh.disable != "" || features.Check(features.IterTCP) != nil {
			path = "sock_diag SOCK_DESTROY"
		}
		if !strings.Contains(out, path) || !strings.Contains(out, "4 connections closed") {
			t.Fatalf("rebalance (%s=%q): want 4 connections closed with %s:\n%s", features.DisableEnv, sh.disable, path, out)
		}
		for _, c := range conns {
			wantClosed(t, c)
		}
		wantOpen(t, v2conn)
		v2conn.Close()
		// sockops counts every close by a socket destroy, whichever path
		// made it: 4 more each round.
		if ep := endpointStatus(t, sh.status(), capsEndpoint["one"]); ep.Rebalanced != uint64(4*(round+1)) {
			t.Fatalf("status counts %d of v1's connections rebalanced, want %d", ep.Rebalanced, 4*(round+1))
		}
	}

	// down: nothing is left.
	sh.must("down")
	if n := env.CgroupPrograms(); n != 0 {
		t.Fatalf("%d programs left on the cgroup after down", n)
	}
	if _, err := os.Stat(tg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory %s after down: %v", tg.Dir, err)
	}
	if _, err := env.Ask(capsFrontend); err == nil {
		t.Fatal("the frontend still answers after down")
	}
}

// The daemon (run; the agent runs the same loader calls on the objects it
// reads from the API server) under the DaemonSet's capabilities: it
// applies, follows the file and stops leaving the state in force.
func TestCapsDaemonSetDaemon(t *testing.T) {
	env := remotePair(t)
	sh := newCapsShell(t, env)
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	path := newConfigFile(t, connectConfig)
	d := newDaemonLog()
	cmd := sh.command("run", "-f", path)
	cmd.Stderr = d.log
	sh.start(cmd)
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		d.wait()
	})
	d.waitLog(t, "msg=running", 1)
	wantCount(t, env, 10, map[string]int{"one": 8, "two": 2})
	writeConfig(t, path, strings.Replace(strings.Replace(connectConfig, "weight: 80", "weight: 0", 1), "weight: 20", "weight: 100", 1))
	d.waitLog(t, `msg="route config applied"`, 1)
	wantCount(t, env, 10, map[string]int{"two": 10})
	if lines := d.log.lines("level=ERROR"); len(lines) != 0 {
		t.Fatalf("daemon logged errors:\n%s", strings.Join(lines, "\n"))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := d.wait(); err != nil {
		t.Fatalf("daemon: %v\n%s", err, d.log.b.String())
	}
	wantCount(t, env, 10, map[string]int{"two": 10}) // the state stays
}

// Each capability the DaemonSet grants is needed: without it a command
// fails, saying what the kernel refused, and changes nothing. A capability
// added to the manifest needs a case here.
func TestCapsDaemonSetEachNeeded(t *testing.T) {
	cases := map[string]func(t *testing.T, env *testenv.Env, sh capsShell){
		// setns(2) into the namespace served, which every command but
		// doctor does, needs CAP_SYS_ADMIN.
		"SYS_ADMIN": func(t *testing.T, env *testenv.Env, sh capsShell) {
			out, err := sh.run("apply", "-f", newConfigFile(t, connectConfig))
			if err == nil || !strings.Contains(out, "network namespace") || !strings.Contains(out, "operation not permitted") {
				t.Fatalf("apply without CAP_SYS_ADMIN: %v, want it refused entering the network namespace:\n%s", err, out)
			}
			t.Logf("apply without CAP_SYS_ADMIN: %s", strings.TrimSpace(out))
			if n := env.CgroupPrograms(); n != 0 {
				t.Fatalf("%d programs attached by the refused apply", n)
			}
			if _, err := env.Ask(capsFrontend); err == nil {
				t.Fatal("the frontend answers after a refused apply")
			}
		},
		// Where the kernel has no iter/tcp with bpf_sock_destroy (before
		// 6.5, or refused), rebalance closes sockets through sock_diag
		// SOCK_DESTROY, which needs CAP_NET_ADMIN.
		"NET_ADMIN": func(t *testing.T, env *testenv.Env, sh capsShell) {
			full := capsShell{t: t, env: env, bin: sh.bin, caps: slices.Concat(sh.caps, []string{"NET_ADMIN"})}
			full.must("apply", "-f", newConfigFile(t, connectConfig))
			full.must("set-weight", "tcp-echo", "v1=100", "v2=0")
			c, _ := heldConn(t, env)
			full.must("set-weight", "tcp-echo", "v1=0", "v2=100")
			out, err := sh.disabling(features.IterTCP).run("rebalance", "tcp-echo", "--subset", "v1", "--over", "1s")
			if err == nil || !strings.Contains(out, string(features.DiagDestroy)) || !strings.Contains(out, "operation not permitted") {
				t.Fatalf("rebalance through sock_diag without CAP_NET_ADMIN: %v, want it refused naming %s:\n%s", err, features.DiagDestroy, out)
			}
			t.Logf("rebalance through sock_diag without CAP_NET_ADMIN: %s", strings.TrimSpace(out))
			wantOpen(t, c)
			full.must("down")
		},
	}
	caps := daemonSetCaps(t)
	for _, c := range caps {
		check, ok := cases[c]
		if !ok {
			t.Errorf("deploy/daemonset.yaml adds CAP_%s: add a case here showing what fails without it", c)
			continue
		}
		t.Run(c, func(t *testing.T) {
			env := remotePair(t)
			sh := newCapsShell(t, env).without(c)
			tg := env.Target()
			t.Cleanup(func() { tg.Down() })
			check(t, env, sh)
		})
	}
	for c := range cases {
		if !slices.Contains(caps, c) {
			t.Errorf("a case for CAP_%s, which deploy/daemonset.yaml does not add", c)
		}
	}
}

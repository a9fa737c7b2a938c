package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/internal/testenv"
)

// TestInstallAndUnit installs into a temporary tree with `make install`,
// has systemd check the unit, then runs the unit's own command line on the
// example config (in a private namespace) and drives it as systemd would:
// reload is SIGHUP, stop is SIGTERM.
func TestInstallAndUnit(t *testing.T) {
	root := t.TempDir()
	dirs := map[string]string{
		"BINDIR": filepath.Join(root, "bin"), "UNITDIR": filepath.Join(root, "systemd"),
		"CONFDIR": filepath.Join(root, "etc"), "DOCDIR": filepath.Join(root, "doc"),
	}
	makeArgs := func(target string) []string {
		args := []string{"-C", "..", target}
		for k, v := range dirs {
			args = append(args, k+"="+v)
		}
		return args
	}
	if out, err := exec.Command("make", makeArgs("install")...).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit := filepath.Join(dirs["UNITDIR"], "tcpshift.service")
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	for _, line := range strings.Split(string(text), "\n") {
		if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(cmd)
		}
	}
	conf := filepath.Join(dirs["CONFDIR"], "routes.yaml")
	want := []string{filepath.Join(dirs["BINDIR"], "tcpshift"), "run", "-f", conf, "--metrics-addr", "127.0.0.1:9090"}
	if strings.Join(execStart, " ") != strings.Join(want, " ") {
		t.Fatalf("ExecStart=%v, want %v", execStart, want)
	}

	// The user's first step: the example becomes routes.yaml.
	example, err := os.ReadFile(conf + ".example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(conf, example); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if err := os.WriteFile(conf, example, 0o644); err != nil {
		t.Fatal(err)
	}

	env := testenv.New(t)
	echoPair(env)
	tg := env.Target()
	t.Cleanup(func() { tg.Down() })
	p := startDaemonProcess(t, env, execStart[0], execStart[1:]...)
	wantSplit(t, env, 10, map[string]int{"one": 10})
	if got := value(t, scrape(t, env, "127.0.0.1:9090"), "tcpshift_config_reloads_total", nil); got != 1 {
		t.Errorf("reloads %v, want 1", got)
	}

	p.cmd.Process.Signal(syscall.SIGHUP) // systemctl reload
	p.waitLog(t, `msg="route config applied"`, 1)
	p.cmd.Process.Signal(syscall.SIGTERM) // systemctl stop
	if err := p.wait(); err != nil {
		t.Fatalf("stop: %v\n%s", err, p.log.b.String())
	}
	wantSplit(t, env, 10, map[string]int{"one": 10}) // the state stays

	if out, err := exec.Command("make", makeArgs("uninstall")...).CombinedOutput(); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	for _, gone := range []string{unit, execStart[0], conf + ".example"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall", gone)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("uninstall removed the user's routes.yaml: %v", err)
	}
}

// TestVagrantfile checks that the VM is provisioned by the dependency
// script, with a mode the script has, and that both files parse.
func TestVagrantfile(t *testing.T) {
	out, err := exec.Command("ruby", "-c", "../vagrant/Vagrantfile").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Syntax OK") {
		t.Fatalf("ruby -c vagrant/Vagrantfile: %v\n%s", err, out)
	}
	vf, err := os.ReadFile("../vagrant/Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`config.vm.box = "debian/bookworm64"`, `"..", "/vagrant"`, "bash /vagrant/scripts/install-deps.sh vagrant"} {
		if !strings.Contains(string(vf), want) {
			t.Errorf("Vagrantfile lacks %s", want)
		}
	}
	if out, err := exec.Command("bash", "-n", "../scripts/install-deps.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n install-deps.sh: %v\n%s", err, out)
	}
	script, err := os.ReadFile("../scripts/install-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nvagrant) pkgs=") {
		t.Error("install-deps.sh has no vagrant mode")
	}
}

// The demo and the README print `date | nc -N ADDR PORT`: the install step
// brings the nc that takes -N (netcat-openbsd), and that command, as
// printed, gets its answer from a tcp-echo backend.
func TestNcAsPrinted(t *testing.T) {
	script, err := os.ReadFile("../scripts/install-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"test", "demo", "vagrant"} {
		re := regexp.MustCompile(`(?m)^` + mode + `\) pkgs=\(([^)]*)\)`)
		m := re.FindStringSubmatch(string(script))
		if m == nil || !slices.Contains(strings.Fields(m[1]), "netcat-openbsd") {
			t.Errorf("install-deps.sh %s does not install netcat-openbsd: %q", mode, m)
		}
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "install-deps.sh demo\n\t$(BIN)/tcpshift demo") {
		t.Error("make demo does not install what the demo's commands need first")
	}
	env := testenv.New(t)
	env.Echo("127.0.0.1:9001", "one")
	cmd := exec.Command("nsenter", "--net="+env.NS.Path(), "bash", "-c", "date | nc -N 127.0.0.1 9001")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "one ") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("date | nc -N 127.0.0.1 9001: %v\n%s", err, out)
	}
}

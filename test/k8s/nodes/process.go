//go:build k8s

package nodes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Process is a process running in a pod.
type Process struct {
	Cmd  *exec.Cmd
	Log  string // its stdout and stderr
	done chan struct{}
	err  error
}

// Start runs argv in the pod: in its network namespace and in its cgroup
// (so connect hooks attached to the node's cgroup see its sockets), output
// to a log file. It is stopped when the test ends, and its log's last lines
// printed if the test failed.
func (p *Pod) Start(argv ...string) *Process {
	p.t.Helper()
	return startProcess(p.t, p.dir, "pod "+p.Name, p.startIn, argv)
}

// Start runs argv in the test's own network namespace, where the API
// server listens and tcpshift agent runs (with a node's Flags), and in the
// test's cgroup; otherwise as Pod.Start.
func Start(t testing.TB, argv ...string) *Process {
	t.Helper()
	return startProcess(t, t.TempDir(), "test", func(cmd *exec.Cmd) error {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd.Start()
	}, argv)
}

func startProcess(t testing.TB, dir, where string, start func(*exec.Cmd) error, argv []string) *Process {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("start: no command")
	}
	log := filepath.Join(dir, fmt.Sprintf("%s-%d.log", filepath.Base(argv[0]), time.Now().UnixNano()))
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := start(cmd); err != nil {
		t.Fatalf("%s: start %s: %v", where, argv[0], err)
	}
	pr := &Process{Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	t.Cleanup(func() {
		pr.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("---- %s: %s (%s) ----\n%s", where, argv[0], log, tail(b, 40))
		}
	})
	return pr
}

// startIn starts cmd inside the pod's network namespace (forked from a
// thread switched into it) and cgroup (clone3 into the cgroup).
func (p *Pod) startIn(cmd *exec.Cmd) error {
	cg, err := p.cgroupFD()
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer cg.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	return p.ns.Do(cmd.Start)
}

// Kill ends the process at once (SIGKILL): nothing it would do on its way
// out (a Lease given up, say) is done.
func (pr *Process) Kill() {
	pr.Cmd.Process.Kill()
	<-pr.done
}

// Stop ends the process (SIGTERM, SIGKILL after 5 s) and returns how it ended.
func (pr *Process) Stop() error {
	select {
	case <-pr.done:
		return pr.err
	default:
	}
	pr.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(5 * time.Second):
		pr.Cmd.Process.Kill()
		<-pr.done
	}
	return pr.err
}

// Exited reports whether the process has ended.
func (pr *Process) Exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

func tail(b []byte, lines int) string {
	all := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return string(bytes.Join(all, []byte("\n")))
}

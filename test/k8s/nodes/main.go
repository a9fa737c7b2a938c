//go:build k8s

// Package nodes simulates a Kubernetes cluster's nodes and pods with real
// kernel parts: a node is a network namespace, a bpffs and a cgroup joined
// to the test's network namespace by a veth pair, a pod is a network
// namespace and a cgroup under its node's, joined to the node by a veth
// pair, running real processes. Pod CIDRs are routed through the test's
// namespace, so pods on different nodes reach each other.
//
// The tests run in a network and mount namespace of their own: a test
// package's TestMain calls Main, which runs the tests in a copy of the test
// binary started in fresh namespaces. Everything a test makes is removed
// when it ends. Nodes and pods are made from the test's goroutine, one at a
// time.
//
// An agent test, roughly:
//
//	c := cluster.Start(t)
//	n1, n3 := nodes.NewNode(t, "node1", 1), nodes.NewNode(t, "node3", 3)
//	client, echo := n1.NewPod("client"), n3.NewPod("echo-v1")
//	echo.Start(tcpEcho, "9000", "v1")
//	c.AddPod(t, "default", echo.Name, n3.Name, map[string]string{"app": "tcp-echo"}, echo.IP.String())
//	argv := append(append([]string{tcpshift}, n1.Flags()...), "agent", "--node", n1.Name, "--kubeconfig", c.Kubeconfig)
//	nodes.Start(t, argv...)
//	a, err := client.Ask("10.96.0.50:9000") // a.Prefix "v1"; a.Peer is what getpeername says
package nodes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader"
)

const (
	isolatedEnv = "TCPSHIFT_K8S_ISOLATED" // set in the copy that runs the tests
	cgroupEnv   = "TCPSHIFT_K8S_CGROUP"   // the parent cgroup, for the copy
	helperEnv   = "TCPSHIFT_K8S_HELPER"   // set in a pod's client helper
)

// parentCgroup holds the nodes' cgroups. Main makes it before starting the
// copy that runs the tests and removes it after the copy ends, however it
// ends (a test timeout kills the copy before its cleanups run).
var parentCgroup string

// Main runs the package's tests in their own network and mount namespaces
// and returns only through os.Exit. Call it from TestMain:
//
//	func TestMain(m *testing.M) { nodes.Main(m) }
//
// It also serves as a pod's client helper (see Pod.Dial) or echo-basic server
// (Pod.StartEchoBasic), for which the test binary runs itself inside the pod.
func Main(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	if os.Getenv(isolatedEnv) == "" {
		os.Exit(runIsolatedCopy())
	}
	os.Exit(runTests(m))
}

// runIsolatedCopy starts the test binary again, with the same arguments, in
// a new network and mount namespace, and passes on its exit code. The
// namespaces, and so the mounts, links and routes the tests make there, end
// with the copy; the cgroups, which are the host's, are removed here.
func runIsolatedCopy() (code int) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the Kubernetes tests need root (network namespaces, cgroups, bpffs): run sudo make k8s-test")
		return 1
	}
	cg, err := loader.TempCgroup("tcpshift-k8s")
	if err != nil {
		fmt.Fprintf(os.Stderr, "parent cgroup for the nodes: %v\n", err)
		return 1
	}
	defer func() {
		if _, err := removeCgroup(cg); err != nil {
			fmt.Fprintf(os.Stderr, "remove the nodes' cgroups: %v\n", err)
			code = 1
		}
	}()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), isolatedEnv+"=1", cgroupEnv+"="+cg)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "start the tests in their own namespaces: %v\n", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s) // the copy cleans up and ends
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "tests in their own namespaces: %v\n", err)
		return 1
	}
}

// runTests prepares the fresh namespaces (mounts private, lo up, forwarding
// on: this namespace routes between the nodes), runs the tests and checks
// that they left no cgroup behind.
func runTests(m *testing.M) int {
	if err := setupNamespace(); err != nil {
		fmt.Fprintf(os.Stderr, "prepare the tests' namespace: %v\n", err)
		return 1
	}
	parentCgroup = os.Getenv(cgroupEnv)
	code := m.Run()
	entries, err := os.ReadDir(parentCgroup)
	for _, e := range entries {
		if e.IsDir() {
			// Removed by Main after this copy ends, but a failure.
			fmt.Fprintf(os.Stderr, "nodes: a test left cgroup %s/%s behind\n", parentCgroup, e.Name())
			code = 1
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodes: %v\n", err)
		code = 1
	}
	return code
}

func setupNamespace() error {
	// Mounts made here (netns files, bpffs) never propagate to the host's
	// namespace, and end with the process even if it is killed.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := dropInheritedMounts(); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	if err := skipDAD(); err != nil {
		return err
	}
	return enableForwarding()
}

// dropInheritedMounts unmounts, in this namespace only, the bpffs and
// network namespace mounts copied from the host's: held here, they would
// keep other processes' pinned BPF objects and namespaces alive after those
// processes unmount them.
func dropInheritedMounts() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- { // later mounts first: they may sit on earlier ones
		fields := strings.Fields(lines[i])
		_, fs, ok := strings.Cut(lines[i], " - ")
		if !ok || len(fields) < 5 || !(strings.HasPrefix(fs, "bpf ") || strings.HasPrefix(fs, "nsfs ")) {
			continue
		}
		if err := unix.Unmount(unescapeMountPath(fields[4]), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount the inherited %s: %w", fields[4], err)
		}
	}
	return nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// requireIsolated fails the test unless it runs in the namespaces Main made.
func requireIsolated(t testing.TB) {
	t.Helper()
	if os.Getenv(isolatedEnv) == "" || parentCgroup == "" {
		t.Fatal("nodes need the test's own namespaces: the package's TestMain must call nodes.Main(m)")
	}
}

// writeSysctl sets a sysctl of the calling thread's network namespace
// (/proc/sys/net follows the thread's namespace).
func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// ParentCgroup is the test-owned cgroup the nodes' cgroups are made in;
// empty outside Main.
func ParentCgroup() string { return parentCgroup }

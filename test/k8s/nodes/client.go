//go:build k8s

package nodes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A pod's connections are made by a helper: the test binary run again
// inside the pod's network namespace and cgroup. A thread could enter the
// namespace, but in cgroup v2 a socket belongs to the cgroup of the whole
// process that makes it, and the hooks on the node's cgroup run for sockets
// of the cgroups below it; so the socket must come from a process in the pod.

// Answer is one exchange with a tcp-echo backend.
type Answer struct {
	Prefix string         // the prefix the backend answered with: which backend it was
	Peer   netip.AddrPort // getpeername of the pod's socket, as the pod sees it
	Local  netip.AddrPort // getsockname of the pod's socket
	Cgroup string         // the client's cgroup v2 path, as /proc/self/cgroup has it
}

// Dial connects from inside the pod (its namespace and cgroup) and hands the
// connected socket to the test. Connect hooks on the node's cgroup run for
// it; RemoteAddr is getpeername's answer.
func (p *Pod) Dial(addr string) (*net.TCPConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "dial"), os.NewFile(uintptr(fds[1]), "dial-helper")
	defer ours.Close()
	cmd := p.helper("dial", addr, 1)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	err = p.startIn(cmd)
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("pod %s: start client: %w", p.Name, err)
	}
	msg, fd, rerr := receiveSocket(ours)
	werr := cmd.Wait()
	switch {
	case rerr != nil:
		return nil, fmt.Errorf("pod %s: dial %s: %v (client: %v %s)", p.Name, addr, rerr, werr, strings.TrimSpace(stderr.String()))
	case fd < 0:
		return nil, fmt.Errorf("pod %s: dial %s: %s", p.Name, addr, msg)
	}
	f := os.NewFile(uintptr(fd), "pod-conn")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.Name, err)
	}
	return c.(*net.TCPConn), nil
}

// receiveSocket reads the helper's message: a socket, or an error text.
func receiveSocket(f *os.File) (msg string, fd int, err error) {
	f.SetDeadline(time.Now().Add(30 * time.Second))
	raw, err := f.SyscallConn()
	if err != nil {
		return "", -1, err
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	err = raw.Read(func(s uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(s), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return "", -1, fmt.Errorf("receive the socket: %w", err)
	}
	if n == 0 {
		return "", -1, errors.New("the client ended without an answer")
	}
	msg = string(buf[:n])
	if msg != "ok" {
		return msg, -1, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return "", -1, fmt.Errorf("no socket in the client's answer (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		return "", -1, fmt.Errorf("no socket in the client's answer (%v)", err)
	}
	return "ok", fds[0], nil
}

// Ask connects from inside the pod to a tcp-echo backend at addr, sends one
// line and returns who answered.
func (p *Pod) Ask(addr string) (Answer, error) {
	answers, err := p.AskN(addr, 1)
	if err != nil {
		return Answer{}, err
	}
	return answers[0], nil
}

// AskN makes n connections one after another from inside the pod, one
// exchange each, all from one helper process; it stops at the first error.
func (p *Pod) AskN(addr string, n int) ([]Answer, error) {
	cmd := p.helper("ask", addr, n)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := p.startIn(cmd); err != nil {
		return nil, fmt.Errorf("pod %s: start client: %w", p.Name, err)
	}
	werr := cmd.Wait()
	var answers []Answer
	s := bufio.NewScanner(&stdout)
	for s.Scan() {
		var r askResult
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			return answers, fmt.Errorf("pod %s: client said %q: %w", p.Name, s.Text(), err)
		}
		if r.Error != "" {
			return answers, fmt.Errorf("pod %s: connection %d to %s: %s", p.Name, len(answers)+1, addr, r.Error)
		}
		answers = append(answers, r.Answer)
	}
	if werr != nil || len(answers) != n {
		return answers, fmt.Errorf("pod %s: client to %s: %d of %d answers (%v) %s", p.Name, addr, len(answers), n, werr, strings.TrimSpace(stderr.String()))
	}
	return answers, nil
}

// Count makes n connections from inside the pod (AskN) and counts the
// backends that answered, by prefix; an error fails the test.
func (p *Pod) Count(addr string, n int) map[string]int {
	p.t.Helper()
	answers, err := p.AskN(addr, n)
	if err != nil {
		p.t.Fatal(err)
	}
	got := map[string]int{}
	for _, a := range answers {
		got[a.Prefix]++
	}
	return got
}

// Connect calls connect() to addr n times from inside the pod, on fresh
// blocking sockets closed at once, and returns how many succeeded and
// failed (an unreachable endpoint fails at once), for measurements of the
// connect hooks' cost.
func (p *Pod) Connect(addr string, n int) (ok, failed int, err error) {
	cmd := p.helper("connect", addr, n)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := p.startIn(cmd); err != nil {
		return 0, 0, fmt.Errorf("pod %s: start client: %w", p.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("pod %s: client: %v %s", p.Name, err, strings.TrimSpace(stderr.String()))
	}
	if _, err := fmt.Sscan(stdout.String(), &ok, &failed); err != nil {
		return 0, 0, fmt.Errorf("pod %s: client said %q: %w", p.Name, stdout.String(), err)
	}
	return ok, failed, nil
}

// helper is the command that runs this test binary as a pod's client.
func (p *Pod) helper(mode, addr string, n int) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = "tcpshift-pod-client"
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TCPSHIFT_K8S_ADDR="+addr, "TCPSHIFT_K8S_COUNT="+strconv.Itoa(n))
	return cmd
}

// askResult is one line of the ask helper's output.
type askResult struct {
	Answer
	Error string `json:",omitempty"`
}

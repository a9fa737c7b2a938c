//go:build k8s

package nodes

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"

	"github.com/tcpshift/tcpshift/loader/listener"
)

// The Gateway API conformance suite's TCP backend is its echo-basic image
// with TCP_ECHO_SERVER set (conformance/echo-basic/tcpserver, v1.6.1): on
// each connection it writes EchoBasicWelcome, then answers the lines TEST
// (EchoBasicAnswer as one JSON line), IS_TLS ("false" over plain TCP) and
// PING ("PONG"), and ignores any other. The test binary serves it in a pod
// (StartEchoBasic), configured by the environment the image reads.

// EchoBasicWelcome is the server's first line on every connection.
const EchoBasicWelcome = "Gateway API Test TCP Server\n"

// EchoBasicAnswer is the answer to TEST: the pod's context (tcpserver's
// TCPAssertions, without TLS), in its JSON names.
type EchoBasicAnswer struct {
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
	TCPPort   string `json:"tcpport"`
	TLSPort   string `json:"tlsport,omitempty"`
	IsTLS     bool   `json:"isTLS"`
}

// StartEchoBasic runs the suite's TCP echo server in the pod with env
// (NAME=value, as its container's env resolves: POD_NAME, NAMESPACE,
// SERVICE_NAME, TCP_PORT).
func (p *Pod) StartEchoBasic(env []string) *Process {
	p.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		p.t.Fatalf("pod %s: the test binary: %v", p.Name, err)
	}
	return startProcess(p.t, p.dir, "pod "+p.Name, func(cmd *exec.Cmd) error {
		cmd.Env = append(append(os.Environ(), env...), helperEnv+"=echo-basic")
		return p.startIn(cmd)
	}, []string{exe})
}

// serveEchoBasic is the helper mode StartEchoBasic runs; it returns only
// on an error (a signal ends it).
func serveEchoBasic() int {
	port := cmp.Or(os.Getenv("TCP_PORT"), "3000")
	payload, err := json.Marshal(EchoBasicAnswer{
		Namespace: os.Getenv("NAMESPACE"), Ingress: os.Getenv("INGRESS_NAME"), Service: os.Getenv("SERVICE_NAME"),
		Pod: os.Getenv("POD_NAME"), TCPPort: port, TLSPort: cmp.Or(os.Getenv("TLS_PORT"), "8443"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Never MPTCP, like the project's other backends.
	ln, err := listener.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("echo-basic %s listening on %s\n", os.Getenv("POD_NAME"), ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go echoBasicConn(c, payload)
	}
}

func echoBasicConn(c net.Conn, payload []byte) {
	defer c.Close()
	if _, err := fmt.Fprint(c, EchoBasicWelcome); err != nil {
		return
	}
	s := bufio.NewScanner(c)
	for s.Scan() {
		var err error
		switch s.Text() {
		case "TEST":
			_, err = fmt.Fprintf(c, "%s\n", payload)
		case "IS_TLS":
			_, err = fmt.Fprint(c, "false\n")
		case "PING":
			_, err = fmt.Fprint(c, "PONG\n")
		}
		if err != nil {
			return
		}
	}
}

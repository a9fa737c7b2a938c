//go:build k8s

package k8s

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/tcpshift/tcpshift/test/k8s/nodes"
)

// echoTimeout bounds one connection's exchange, the suite's RequestTimeout.
const echoTimeout = 10 * time.Second

// echoSend is the suite's tcp.EchoSendOnce: a new connection to addr, its
// welcome line, then TEST, whose answer names the pod. With handshake it
// first checks PING and IS_TLS as well, as one try of the suite's
// WaitForValidTCPResponse does.
func echoSend(addr string, handshake bool) (nodes.EchoBasicAnswer, error) {
	var a nodes.EchoBasicAnswer
	c, err := net.DialTimeout("tcp", addr, echoTimeout)
	if err != nil {
		return a, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(echoTimeout))
	r := bufio.NewReader(c)
	exchange := func(send string) (string, error) {
		if send != "" {
			if _, err := fmt.Fprint(c, send+"\n"); err != nil {
				return "", fmt.Errorf("%s: send %s: %w", addr, send, err)
			}
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("%s: read the answer to %q: %w", addr, send, err)
		}
		return line, nil
	}
	steps := [][2]string{{"", nodes.EchoBasicWelcome}}
	if handshake {
		steps = append(steps, [2]string{"PING", "PONG\n"}, [2]string{"IS_TLS", "false\n"})
	}
	for _, st := range steps {
		got, err := exchange(st[0])
		if err != nil {
			return a, err
		}
		if got != st[1] {
			return a, fmt.Errorf("%s: %q answered %q, want %q", addr, st[0], got, st[1])
		}
	}
	line, err := exchange("TEST")
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		return a, fmt.Errorf("%s: TEST answered %q: %w", addr, line, err)
	}
	if a.Pod == "" {
		return a, fmt.Errorf("%s: TEST answered %q, which names no pod", addr, line)
	}
	return a, nil
}

// Package echo is the tcp-echo sample backend: it answers every line it
// reads with "PREFIX line", like Istio's tcp-echo.
package echo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Serve accepts connections on ln until it is closed and answers each line
// with prefix, a space and the line. It returns nil once ln is closed.
func Serve(ln net.Listener, prefix string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			answer(c, prefix)
		}()
	}
}

func answer(c net.Conn, prefix string) {
	r := bufio.NewScanner(c)
	w := bufio.NewWriter(c)
	for r.Scan() {
		fmt.Fprintf(w, "%s %s\n", prefix, r.Text())
		if w.Flush() != nil {
			return
		}
	}
}

// Ask sends one line on c and returns the answer without its newline.
func Ask(c net.Conn, line string) (string, error) {
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return reply[:len(reply)-1], nil
}

// Package echo is the tcp-echo sample backend: it answers every line it
// reads with "PREFIX line", byte for byte like Istio's tcp-echo server.
package echo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Serve accepts connections on ln until it is closed and answers each line
// with prefix, a space and the line. It returns nil once ln is closed, after
// every connection it accepted has ended.
//
// Lines are answered like Istio's tcp-echo server (samples/tcp-echo), which
// reads each line up to and including its '\n' and writes back
// prefix + " " + those bytes:
//   - the line is echoed as it came, with its '\n' and anything before it
//     (a "\r\n" line keeps its '\r');
//   - a line of any length is answered whole, in one answer;
//   - bytes after the last '\n' when the client ends its side (EOF) are not
//     a line and get no answer; every complete line before them does, and
//     the server closes the connection only after writing the last answer,
//     so a client that half-closes (shutdown SHUT_WR) reads every answer
//     and then EOF.
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

// keepLong is the largest line buffer kept between lines of a connection;
// a longer one is dropped once its line is answered.
const keepLong = 64 << 10

// answer answers every complete line read from c until EOF, a read error or
// a write error.
func answer(c net.Conn, prefix string) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	var long []byte // a line longer than r's buffer, gathered piece by piece
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			continue
		}
		if err != nil {
			// EOF or a read error: what was read of an unfinished line
			// gets no answer, as in Istio's server.
			return
		}
		if len(long) > 0 {
			long = append(long, line...)
			line = long
		}
		w.WriteString(prefix)
		w.WriteByte(' ')
		w.Write(line)
		if w.Flush() != nil {
			return
		}
		if cap(long) > keepLong {
			long = nil
		} else {
			long = long[:0]
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

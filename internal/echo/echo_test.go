package echo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serve starts Serve with prefix on a loopback port and returns its address;
// the test's cleanup closes the listener and checks that Serve returned nil.
func serve(t *testing.T, prefix string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ln, prefix) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of its listener closing")
		}
	})
	return ln.Addr().String()
}

// exchange sends input on a new connection to addr, half-closes it
// (shutdown SHUT_WR) and returns everything the server sends until it closes
// the connection. Sending and reading overlap, so input may be large.
func exchange(t *testing.T, addr string, input []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(input)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the answers: %v (after %d bytes)", err, len(got))
	}
	if err := <-sent; err != nil {
		t.Fatalf("send: %v", err)
	}
	return got
}

// istio is what Istio's tcp-echo server answers to input on one connection:
// prefix, a space and the line for each line up to and including its '\n';
// bytes after the last '\n' get nothing.
func istio(prefix string, input []byte) []byte {
	var want []byte
	for {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			return want
		}
		want = append(want, prefix+" "...)
		want = append(want, input[:i+1]...)
		input = input[i+1:]
	}
}

func checkExchange(t *testing.T, addr, prefix string, input []byte) {
	t.Helper()
	got := exchange(t, addr, input)
	if want := istio(prefix, input); !bytes.Equal(got, want) {
		t.Errorf("answers to %s:\n got %s\nwant %s", abbrev(input), abbrev(got), abbrev(want))
	}
}

func abbrev(b []byte) string {
	if len(b) <= 200 {
		return fmt.Sprintf("%q (%d bytes)", b, len(b))
	}
	return fmt.Sprintf("%q ... %q (%d bytes)", b[:100], b[len(b)-100:], len(b))
}

func TestServeAnswersEveryLine(t *testing.T) {
	addr := serve(t, "one")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, line := range []string{"Sat Nov 21 15:00:00 UTC 2026", "second line", ""} {
		got, err := Ask(c, line)
		if err != nil || got != "one "+line {
			t.Fatalf("Ask(%q) = %q, %v", line, got, err)
		}
	}
}

func TestServeSeveralLinesOnOneConnection(t *testing.T) {
	addr := serve(t, "one")
	input := []byte("first\nsecond line\n\n  spaces kept  \n\ttab\nlast\n")
	got := exchange(t, addr, input)
	want := "one first\none second line\none \none   spaces kept  \none \ttab\none last\n"
	if string(got) != want {
		t.Errorf("answers = %q, want %q", got, want)
	}
}

func TestServeLastLineWithoutNewline(t *testing.T) {
	// Istio's server reads with ReadBytes('\n') and returns on io.EOF
	// without writing what it read: a last line without '\n' is not
	// answered, and no newline is made up for it.
	addr := serve(t, "one")
	for _, tc := range []struct{ input, want string }{
		{"a\nb", "one a\n"},
		{"no newline at all", ""},
		{"a\r\nb\r", "one a\r\n"},
		{"", ""},
	} {
		if got := exchange(t, addr, []byte(tc.input)); string(got) != tc.want {
			t.Errorf("answers to %q then EOF = %q, want %q", tc.input, got, tc.want)
		}
	}
}

func TestServeKeepsCR(t *testing.T) {
	addr := serve(t, "one")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// One line at a time: each answer comes before the next line is sent.
	r := bufio.NewReader(c)
	for _, line := range []string{"hello\r\n", "\r\n", "a\rb\r\n", "mixed\n"} {
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		want := "one " + line
		if got, err := r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("answer to %q = %q, %v; want %q", line, got, err, want)
		}
	}
	checkExchange(t, addr, "one", []byte("x\r\ny\r\n\r\nz\r\n"))
}

func TestServeLongLines(t *testing.T) {
	addr := serve(t, "one")
	rnd := rand.New(rand.NewPCG(1, 2))
	line := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			if b[i] = byte(rnd.IntN(256)); b[i] == '\n' {
				b[i] = 'n'
			}
		}
		return append(b, '\n')
	}
	var input []byte
	input = append(input, line(1<<20)...)   // 1 MiB: far past any read buffer
	input = append(input, "short\n"...)     // the long-line state is reset
	input = append(input, line(100_000)...) // another long one after it
	input = append(input, line(4095)...)    // right around bufio's 4096
	input = append(input, line(4096)...)
	input = append(input, line(4097)...)
	input = append(input, "end\n"...)
	checkExchange(t, addr, "one", input)

	// A 1 MiB line alone, then EOF before its '\n': no answer, as in Istio.
	unfinished := line(1 << 20)
	unfinished = unfinished[:len(unfinished)-1]
	if got := exchange(t, addr, unfinished); len(got) != 0 {
		t.Errorf("unfinished 1 MiB line answered with %d bytes, want none", len(got))
	}
}

func TestServeHalfClose(t *testing.T) {
	// The client shuts down its sending side right after its last line: it
	// still reads every answer, then EOF when the server closes.
	addr := serve(t, "one")
	var input bytes.Buffer
	for i := range 100_000 {
		input.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	checkExchange(t, addr, "one", input.Bytes())
	checkExchange(t, addr, "one", []byte("only line\n"))
}

func TestServeManyConnections(t *testing.T) {
	addr := serve(t, "two")
	t.Run("group", func(t *testing.T) {
		for i := range 20 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				checkExchange(t, addr, "two", []byte(strings.Repeat("conn "+strconv.Itoa(i)+"\n", 1000)))
			})
		}
	})
}

package echo

import (
	"net"
	"testing"
)

func TestServeAnswersEveryLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- Serve(ln, "one") }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Sat Nov 21 15:00:00 UTC 2026", "second line", ""} {
		got, err := Ask(c, line)
		if err != nil || got != "one "+line {
			t.Fatalf("Ask(%q) = %q, %v", line, got, err)
		}
	}
	c.Close()
	ln.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after close: %v", err)
	}
}

package userspace

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkForward measures the CPU one direction of the proxy spends in
// its syscalls per message, moving it with read and write through a buffer
// or with splice through a pipe, by message size: where splice gets cheaper
// is where a flow should switch to it (spliceAfter). cpu-ns/msg includes
// two clock reads per wakeup (a syscall each), the same for both ways.
//
//	go test -run - -bench Forward ./userspace
func BenchmarkForward(b *testing.B) {
	sizes := []int{64, 512, 1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 64 << 10, 256 << 10}
	for _, lockstep := range []bool{true, false} {
		for _, size := range sizes {
			for _, mode := range []string{"copy", "splice"} {
				name := fmt.Sprintf("stream/%s/%d", mode, size)
				if lockstep {
					name = fmt.Sprintf("lockstep/%s/%d", mode, size)
				}
				b.Run(name, func(b *testing.B) { benchForward(b, mode, size, lockstep) })
			}
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection: the raw fd of
// the end the forwarder uses (non-blocking) and the peer.
func tcpPair(b *testing.B) (int, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		b.Fatal(err)
	}
	c.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	unix.SetNonblock(fd, true)
	b.Cleanup(func() { unix.Close(fd); peer.Close() })
	return fd, peer
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// benchForward moves messages of size from a writer to a reader: one at a
// time (lockstep: the writer waits for the reader, as in an exchange), or
// streaming.
func benchForward(b *testing.B, mode string, size int, lockstep bool) {
	src, writer := tcpPair(b)
	dst, reader := tcpPair(b)
	got := make(chan struct{}, 1)
	go func() {
		msg := make([]byte, size)
		for {
			if _, err := writer.Write(msg); err != nil {
				return
			}
			if lockstep {
				if _, ok := <-got; !ok {
					return
				}
			}
		}
	}()
	go func() {
		if !lockstep {
			io.Copy(io.Discard, reader)
			return
		}
		defer close(got)
		msg := make([]byte, size)
		for {
			if _, err := io.ReadFull(reader, msg); err != nil {
				return
			}
			got <- struct{}{}
		}
	}()
	w := &worker{buf: make([]byte, bufSize), p: New(Options{})}
	in, out := &sock{fd: src}, &sock{fd: dst, nodelay: true}
	f := &flow{src: in, dst: out}
	defer func(after int) { spliceAfter = after }(spliceAfter)
	if mode == "splice" {
		f.bulk = true
	} else {
		spliceAfter = 1 << 30
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	total := int64(b.N) * int64(size)
	start := f.moved
	var cpu time.Duration
	t0 := time.Now()
	for f.moved-start < total {
		in.readable, out.writable = true, true
		cpu0 := threadCPU()
		err := w.move(f)
		cpu += threadCPU() - cpu0
		if err != nil {
			b.Fatal(err)
		}
		// Wait, as epoll would, until there is something to move.
		pfd := unix.PollFd{Fd: int32(src), Events: unix.POLLIN}
		if f.pending() {
			pfd = unix.PollFd{Fd: int32(dst), Events: unix.POLLOUT}
		}
		unix.Poll([]unix.PollFd{pfd}, -1)
	}
	wall := time.Since(t0)
	writer.Close()
	reader.Close()
	w.drop(f)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(total)/wall.Seconds()/1e9*8, "Gbit/s")
}

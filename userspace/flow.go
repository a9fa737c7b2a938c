package userspace

import "golang.org/x/sys/unix"

// spliceAfter is how much one read must bring for a direction to move on
// with splice(2): a source that queues that much sends in bulk. Below it a
// read and a write through the worker's buffer cost no more than two
// splice calls through a pipe (equal at 2 KiB per call on the benchmark's
// machine, BenchmarkForward), and much less when the bytes come in small
// pieces (64 B reads: half); from 8 KiB on splice costs clearly less, as it
// copies nothing (a quarter less at 8 KiB, 40% at 64 KiB).
var spliceAfter = 8 << 10

// flow is one direction of a connection. A slow reader holds its writer
// back through the socket buffers: a flow holds at most one read (in its
// buffer or its pipe) that its destination could not take yet.
type flow struct {
	src, dst *sock
	buf      []byte // bytes read, not written yet: buf[off:end]
	off, end int
	pipe     *pipe // once bulk
	piped    int   // bytes in the pipe
	bulk     bool  // a read brought spliceAfter bytes: splice from now on
	moved    int64
	eof      bool // src ended
	done     bool // src ended and every byte was written
	shut     bool // dst was shut for writing
}

func (f *flow) pending() bool { return f.off < f.end || f.piped > 0 }

// move moves f's bytes until its source has none or its destination takes
// none; an error (a reset, a failed write) ends the connection.
func (w *worker) move(f *flow) error {
	for !f.done {
		if f.pending() {
			if !f.dst.writable {
				return nil
			}
			if err := w.flush(f); err != nil {
				return err
			}
			if f.pending() {
				return nil
			}
		}
		if f.eof {
			f.done = true
			w.drop(f)
			return nil
		}
		if !f.src.readable {
			return nil
		}
		if err := w.fill(f); err != nil {
			return err
		}
	}
	return nil
}

// fill reads from the source once, and writes what it read at once; move
// calls it only when the flow holds nothing.
func (w *worker) fill(f *flow) error {
	if f.bulk && f.pipe == nil {
		f.pipe = w.getPipe()
		w.unpace(f.dst)
	}
	if f.pipe != nil {
		return w.fillPipe(f)
	}
	n, err := sysRead(f.src.fd, w.buf)
	if none, err := nothingRead(f, n, err); none {
		return err
	}
	// A short read emptied the socket, unless a FIN or an error came
	// with the data: only a read returns those.
	if n < len(w.buf) && !f.src.hup {
		f.src.readable = false
	}
	f.moved += int64(n)
	f.bulk = n >= spliceAfter
	written := 0
	if f.dst.writable {
		if written, err = w.write(f.dst, w.buf[:n]); err != nil {
			return err
		}
	}
	if written < n {
		f.buf = w.getBuf()
		f.off, f.end = 0, copy(f.buf, w.buf[written:n])
	}
	return nil
}

// nothingRead handles a read or splice from the source that brought no
// bytes (empty for now, interrupted, failed or at its end): none is true
// then, with the error to return.
func nothingRead(f *flow, n int, err error) (none bool, _ error) {
	switch {
	case err == unix.EAGAIN:
		f.src.readable = false
		return true, nil
	case err == unix.EINTR:
		return true, nil
	case err != nil:
		return true, err
	case n == 0:
		f.eof = true
		return true, nil
	}
	return false, nil
}

// fillPipe splices from the source into the flow's pipe, which move keeps
// for when it is empty: EAGAIN then means an empty socket, never a full
// pipe. A short splice proves nothing (the pipe may have run out of slots
// first), so the source stays readable until EAGAIN.
func (w *worker) fillPipe(f *flow) error {
	n, err := sysSplice(f.src.fd, f.pipe.w, f.pipe.size)
	if none, err := nothingRead(f, n, err); none {
		return err
	}
	f.piped += n
	f.moved += int64(n)
	return nil
}

// flush writes what the flow holds until it is empty or the destination
// is full.
func (w *worker) flush(f *flow) error {
	if f.piped > 0 {
		w.nodelay(f.dst)
		for f.piped > 0 {
			n, err := sysSplice(f.pipe.r, f.dst.fd, f.piped)
			switch {
			case err == unix.EAGAIN:
				f.dst.writable = false
				return nil
			case err == unix.EINTR:
			case err != nil:
				return err
			default:
				f.piped -= n
			}
		}
		return nil
	}
	n, err := w.write(f.dst, f.buf[f.off:f.end])
	f.off += n
	if f.off == f.end {
		w.putBuf(f.buf)
		f.buf, f.off, f.end = nil, 0, 0
	}
	return err
}

// write writes p until done or the destination is full.
func (w *worker) write(s *sock, p []byte) (int, error) {
	w.nodelay(s)
	done := 0
	for done < len(p) {
		n, err := sysWrite(s.fd, p[done:])
		switch {
		case err == unix.EAGAIN:
			s.writable = false
			return done, nil
		case err == unix.EINTR:
		case err != nil:
			return done, err
		default:
			done += n
		}
	}
	return done, nil
}

// nodelay sets TCP_NODELAY before a socket's second write: Nagle's
// algorithm only holds back a small segment while an earlier one is
// unacknowledged, so the first write never waits, and a request answered
// in one write each way never pays for the setsockopt.
func (w *worker) nodelay(s *sock) {
	if s.wrote && !s.nodelay {
		s.nodelay = true
		setNoDelay(s.fd)
	}
	s.wrote = true
}

// drop gives back a flow's buffer and pipe; a pipe with bytes left in it
// (the connection failed) is closed.
func (w *worker) drop(f *flow) {
	if f.buf != nil {
		w.putBuf(f.buf)
		f.buf, f.off, f.end = nil, 0, 0
	}
	if f.pipe != nil {
		if f.piped == 0 {
			w.putPipe(f.pipe)
		} else {
			f.pipe.close()
		}
		f.pipe, f.piped = nil, 0
	}
}

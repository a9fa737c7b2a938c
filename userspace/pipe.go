package userspace

import "golang.org/x/sys/unix"

// pipeSize is what the proxy asks of each splice pipe (F_SETPIPE_SZ): more
// bytes per splice call for bulk transfers. The kernel grows a pipe's pages
// only as bytes pass, so an idle pipe costs little.
var pipeSize = 1 << 20

// pipe is a kernel pipe a flow splices through.
type pipe struct {
	r, w int
	size int // its capacity in bytes
}

// getPipe returns an empty pipe, or nil (the flow goes on copying) when the
// process cannot make one.
func (w *worker) getPipe() *pipe {
	if n := len(w.pipes); n > 0 {
		pp := w.pipes[n-1]
		w.pipes = w.pipes[:n-1]
		return pp
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		w.p.opts.Log.Debug("make splice pipe", "err", err)
		return nil
	}
	pp := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	// Past the unprivileged limit (fs.pipe-max-size) or the user's pipe
	// quota, the default size serves.
	if n, err := unix.FcntlInt(uintptr(pp.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		pp.size = n
	} else if n, err := unix.FcntlInt(uintptr(pp.w), unix.F_GETPIPE_SZ, 0); err == nil {
		pp.size = n
	}
	return pp
}

// putPipe keeps an empty pipe for the next flow.
func (w *worker) putPipe(pp *pipe) {
	if len(w.pipes) < maxSpare {
		w.pipes = append(w.pipes, pp)
		return
	}
	pp.close()
}

func (pp *pipe) close() {
	sysClose(pp.r)
	sysClose(pp.w)
}

package userspace

import (
	"io"
	"net"
)

// forward moves bytes both ways until both directions ended. Both ends are
// plain *net.TCPConn on purpose: io.Copy between them is splice(2) through a
// kernel pipe, so bytes are never copied into the proxy and a slow reader
// holds back its writer through the socket buffers instead of growing ours.
func forward(client, backend *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(backend, client)
	}()
	pipe(client, backend)
	<-done
}

// pipe copies src to dst until src ends and passes the end on: a FIN as a
// half close of dst, anything else (a reset, a failed write) as a reset of
// both, so neither peer waits for data that will not come.
func pipe(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err == nil {
		dst.CloseWrite()
		return
	}
	for _, c := range []*net.TCPConn{dst, src} {
		c.SetLinger(0)
		c.Close()
	}
}

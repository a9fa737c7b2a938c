package userspace

import (
	"testing"

	"golang.org/x/sys/unix"
)

// One wait's events are handled in two passes: what a peer waits for, then
// the ends of connections.
func TestPassOf(t *testing.T) {
	ev := func(kind int, events uint32) *unix.EpollEvent {
		e := &unix.EpollEvent{Events: events}
		e.Fd, e.Pad = token(kind, 3, 7)
		return e
	}
	for _, tc := range []struct {
		name string
		ev   *unix.EpollEvent
		want int
	}{
		{"client data", ev(kindClient, unix.EPOLLIN), passNow},
		{"backend answer", ev(kindBackend, unix.EPOLLIN|unix.EPOLLOUT), passNow},
		{"backend connected", ev(kindBackend, unix.EPOLLOUT), passNow},
		{"new connection", ev(kindListener, unix.EPOLLIN), passNow},
		{"command", ev(kindWake, unix.EPOLLIN), passNow},
		{"client FIN", ev(kindClient, unix.EPOLLIN|unix.EPOLLRDHUP), passEnd},
		{"backend FIN with data", ev(kindBackend, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP), passEnd},
		{"refused connect", ev(kindBackend, unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP), passEnd},
	} {
		if got := passOf(tc.ev); got != tc.want {
			t.Errorf("%s: pass %d, want %d", tc.name, got, tc.want)
		}
	}
}

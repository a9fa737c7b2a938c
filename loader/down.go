package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/maps"
)

// Down removes everything tcpshift made in the namespace: the local routes it
// added, the sk_lookup link (which detaches the program), the pinned maps and
// their directories. It reports whether there was anything to remove; running
// it again is harmless.
func (t *Target) Down() (bool, error) {
	if _, err := os.Stat(t.Dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	// Another build's state may lack maps of this one: open what is there.
	set, err := maps.OpenPresent(t.Dir)
	var routesErr error
	switch {
	case err == nil:
		defer set.Close()
		svcs, err := set.ServiceList()
		if err != nil {
			routesErr = fmt.Errorf("local routes tcpshift added may remain (ip route show table local): %w", err)
		}
		done := map[string]bool{}
		for _, svc := range svcs {
			addr := svc.Frontend.Addr()
			if svc.LocalRoute && !done[addr.String()] {
				if err := delLocalRoute(t.nl, addr); err != nil {
					return true, err
				}
				done[addr.String()] = true
			}
		}
	case !errors.Is(err, maps.ErrNotLoaded):
		return true, err
	}

	// Detach explicitly: dropping a link's last reference by unpinning
	// detaches only later, from a kernel work queue.
	for _, h := range hooks {
		l, err := link.LoadPinnedLink(filepath.Join(t.Dir, linkPin(h.prog)), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return true, fmt.Errorf("open pinned %s link: %w", h.prog, err)
		}
		err = l.Detach()
		l.Close()
		if err != nil {
			return true, fmt.Errorf("detach %s: %w", h.prog, err)
		}
	}
	// The pins hold the maps alive; removing them frees everything.
	entries, err := os.ReadDir(t.Dir)
	if err != nil {
		return true, fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(t.Dir, e.Name())); err != nil {
			return true, fmt.Errorf("unpin %s: %w", e.Name(), err)
		}
	}
	if err := os.Remove(t.Dir); err != nil {
		return true, fmt.Errorf("remove pin directory: %w", err)
	}
	// The parent is shared by all namespaces: remove it once it is empty.
	if err := os.Remove(filepath.Dir(t.Dir)); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return true, fmt.Errorf("remove %s: %w", filepath.Dir(t.Dir), err)
	}
	return true, routesErr
}

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

// DownOptions adjust Down.
type DownOptions struct {
	// Force removes the state even while a daemon manages it.
	Force bool
}

// Down removes everything tcpshift made in the namespace: the local routes it
// added, the links (which detach the programs), the pinned maps and their
// directories. State left by a namespace that no longer exists is removed
// too (its routes died with it). It reports whether there was anything to
// remove; running it again is harmless.
func (t *Target) Down() (bool, error) { return t.DownWith(DownOptions{}) }

// DownWith is Down with options.
func (t *Target) DownWith(opts DownOptions) (bool, error) {
	unlock, err := t.lock(false)
	if errors.Is(err, errNoPinDir) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unlock()
	entries, err := os.ReadDir(t.Dir)
	if err != nil {
		return false, fmt.Errorf("read pin directory: %w", err)
	}
	if len(entries) == 0 {
		return false, nil
	}
	// Another build's state may lack maps of this one: open what is there.
	set, err := maps.OpenPresent(t.Dir)
	var routesErr error
	switch {
	case err == nil:
		defer set.Close()
		if !opts.Force {
			if err := refuseIfManaged(set, "remove it"); err != nil {
				return false, err
			}
		}
		cookie, err := t.cookie()
		if err != nil {
			return false, err
		}
		if staleReason(t.Dir, cookie, set) == "" {
			routesErr = t.deleteRoutes(set)
		}
	case !errors.Is(err, maps.ErrNotLoaded):
		return true, err
	}
	if err := removeState(t.Dir); err != nil {
		return true, err
	}
	return true, routesErr
}

// deleteRoutes removes the local routes tcpshift added for frontends.
func (t *Target) deleteRoutes(set *maps.Set) error {
	svcs, err := set.ServiceList()
	if err != nil {
		return fmt.Errorf("local routes tcpshift added may remain (ip route show table local): %w", err)
	}
	done := map[string]bool{}
	for _, svc := range svcs {
		addr := svc.Frontend.Addr()
		if svc.LocalRoute && !done[addr.String()] {
			if err := delLocalRoute(t.nl, addr); err != nil {
				return err
			}
			done[addr.String()] = true
		}
	}
	return nil
}

// removeState detaches the pinned links in dir and removes every pin and
// the directory (the shared parent too once it is empty).
func removeState(dir string) error {
	if _, err := clearState(dir); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("remove pin directory: %w", err)
	}
	if err := os.Remove(filepath.Dir(dir)); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return fmt.Errorf("remove %s: %w", filepath.Dir(dir), err)
	}
	return nil
}

// cleared counts what clearState removed: the cgroup programs it detached
// and the pins (maps and links) it removed.
type cleared struct{ cgroupPrograms, pins int }

// clearState detaches the pinned links in dir and removes every pin; the
// directory stays (a writer holds its lock on it).
func clearState(dir string) (c cleared, err error) {
	// Detach explicitly: dropping a link's last reference by unpinning
	// detaches only later, from a kernel work queue.
	for _, h := range hooks {
		pin := filepath.Join(dir, linkPin(h.prog))
		_, statErr := os.Lstat(pin)
		if err := detachPinned(pin); err != nil {
			return c, fmt.Errorf("detach %s: %w", h.prog, err)
		}
		if statErr == nil && h.attach != 0 {
			c.cgroupPrograms++
		}
	}
	// The pins hold the maps alive; removing them frees everything.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return c, fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return c, fmt.Errorf("unpin %s: %w", e.Name(), err)
		}
		c.pins++
	}
	return c, nil
}

// detachPinned detaches the link pinned at pin, if there is one. A netns
// link whose namespace died is detached already.
func detachPinned(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) {
		return err
	}
	return nil
}

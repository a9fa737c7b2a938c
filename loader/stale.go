package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
)

// Stale is state pinned for a network namespace that no longer exists.
type Stale struct {
	Dir    string
	Reason string
}

// StaleStates lists the state under bpffs whose network namespace was
// deleted without `tcpshift down` (its sk_lookup link is severed). Its
// cgroup programs may still be attached: RemoveStale removes them.
func StaleStates(bpffs string) ([]Stale, error) {
	if bpffs == "" {
		bpffs = DefaultBPFFS
	}
	root := filepath.Join(bpffs, "tcpshift")
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	var out []Stale
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "net-") {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if why := staleReason(dir, 0, nil); why != "" {
			out = append(out, Stale{dir, why})
		}
	}
	return out, nil
}

// RemoveStale removes the stale state in dir (from StaleStates), under the
// same lock writers of that directory take.
func RemoveStale(bpffs string, s Stale) error {
	t := &Target{BPFFS: bpffs, Dir: s.Dir}
	unlock, err := t.lock(false)
	if errors.Is(err, errNoPinDir) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if staleReason(s.Dir, 0, nil) == "" {
		return fmt.Errorf("%s: its network namespace is alive again, not removing it", s.Dir)
	}
	return removeState(s.Dir)
}

// StaleNote is a line for commands to print when other namespaces left
// state behind, "" when none did.
func StaleNote(bpffs string) string {
	stale, err := StaleStates(bpffs)
	if err != nil {
		return ""
	}
	return staleNote(stale)
}

func staleNote(stale []Stale) string {
	if len(stale) == 0 {
		return ""
	}
	return fmt.Sprintf("note: %d deleted network namespace(s) left tcpshift state behind (%s: %s); tcpshift down --stale removes it",
		len(stale), stale[0].Dir, stale[0].Reason)
}

// dropStale is checkOwner for writers, which call it holding the
// namespace's lock, with set opened under it: what it sees is no other
// writer's doing. State that a namespace since deleted left in this one's
// directory (its sk_lookup link severed, or its owner record naming another
// namespace's cookie: cookies are never reused) is removed as RemoveStale
// removes it, its cgroup programs detached and every pin removed, but the
// directory stays, for the lock is held on it. Notice is told in one line.
// removed reports that: the writer then goes on over no state. State whose
// owner record names this namespace is never removed.
func (t *Target) dropStale(set *maps.Set) (removed bool, err error) {
	cookie, err := t.cookie()
	if err != nil {
		return false, err
	}
	why := staleReason(t.Dir, cookie, set)
	if why == "" {
		return false, nil
	}
	o, err := set.Owner()
	if err != nil {
		return false, fmt.Errorf("%w in %s: %s, and its owner record cannot be read (%v): not removing it (tcpshift down does)", ErrStale, t.Dir, why, err)
	}
	if o.NetnsCookie == cookie {
		// Alive: this namespace's own state, whatever its link says.
		return false, fmt.Errorf("%w in %s: %s, yet its owner record names this namespace: not removing it (tcpshift down does)", ErrStale, t.Dir, why)
	}
	held := "no services"
	if svcs, err := set.ServiceList(); err == nil {
		held = serviceNames(svcs)
	}
	c, err := clearState(t.Dir)
	if err != nil {
		return false, fmt.Errorf("remove stale state in %s (%s): %w", t.Dir, why, err)
	}
	if t.Notice != nil {
		owner := "a network namespace"
		if o.NetnsCookie != 0 {
			owner = fmt.Sprintf("network namespace cookie %d", o.NetnsCookie)
		}
		t.Notice(fmt.Sprintf("removed stale state in %s: it belonged to %s, deleted without tcpshift down (inode %d reused); detached its %d cgroup programs, unpinned its %d maps and links (%s)",
			t.Dir, owner, t.NS.Ino, c.cgroupPrograms, c.pins, held))
	}
	return true, nil
}

// claimState is dropStale for the writers that change state in place
// (Update): removed state leaves nothing to change, maps.ErrNotLoaded.
func (t *Target) claimState(set *maps.Set) error {
	removed, err := t.dropStale(set)
	if err == nil && removed {
		return maps.ErrNotLoaded
	}
	return err
}

// serviceNames is "1 service: a", "3 services: a, b, c", the first few.
func serviceNames(svcs []*maps.Service) string {
	if len(svcs) == 0 {
		return "no services"
	}
	const show = 3
	var names []string
	for _, s := range svcs[:min(len(svcs), show)] {
		names = append(names, s.Name)
	}
	list := strings.Join(names, ", ")
	if len(svcs) > show {
		list += fmt.Sprintf(" and %d more", len(svcs)-show)
	}
	if len(svcs) == 1 {
		return "1 service: " + list
	}
	return fmt.Sprintf("%d services: %s", len(svcs), list)
}

// StaleNote is StaleNote(t.BPFFS) without the state in t's own directory,
// which its writers remove themselves (saying so) and its readers refuse.
func (t *Target) StaleNote() string {
	stale, err := StaleStates(t.BPFFS)
	if err != nil {
		return ""
	}
	return staleNote(slices.DeleteFunc(stale, func(s Stale) bool { return s.Dir == t.Dir }))
}

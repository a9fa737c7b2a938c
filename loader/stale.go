package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	if err != nil || len(stale) == 0 {
		return ""
	}
	return fmt.Sprintf("note: %d deleted network namespace(s) left tcpshift state behind (%s: %s); tcpshift down --stale removes it",
		len(stale), stale[0].Dir, stale[0].Reason)
}

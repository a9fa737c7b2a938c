//go:build k8s

package nodes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// removeCgroup kills every process in the cgroup dir and below, waits until
// they are gone and removes the cgroups bottom-up. left reports whether
// dir had cgroups below it.
func removeCgroup(dir string) (left bool, err error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	// cgroup.kill (Linux 5.14) SIGKILLs the whole subtree at once.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		return false, fmt.Errorf("kill cgroup %s: %w", dir, err)
	}
	if err := waitUnpopulated(dir, 10*time.Second); err != nil {
		return false, err
	}
	var subs []string
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir {
			subs = append(subs, path)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for i := len(subs) - 1; i >= 0; i-- { // children before parents
		if err := os.Remove(subs[i]); err != nil {
			return true, fmt.Errorf("remove cgroup: %w", err)
		}
	}
	if err := os.Remove(dir); err != nil {
		return len(subs) > 0, fmt.Errorf("remove cgroup: %w", err)
	}
	return len(subs) > 0, nil
}

// waitUnpopulated waits until no process is left in the cgroup's subtree.
func waitUnpopulated(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "populated 0") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes after %s", dir, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where bpffs is usually mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// pinDir is the directory holding one namespace's pinned state.
func pinDir(bpffs string, ns *Namespace) string {
	return filepath.Join(bpffs, "tcpshift", fmt.Sprintf("net-%d", ns.Ino))
}

// ensureBPFFS mounts bpffs at dir when something else (or nothing) is there.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bpffs %s: %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bpffs %s: %w", dir, err)
		}
	} else if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

package loader

import (
	"bufio"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupRoot finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on most systems, /sys/fs/cgroup/unified on hybrid ones.
func CgroupRoot() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(postFields) > 0 && postFields[0] == "cgroup2" {
			return unescapeMount(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo: mount one, or pass --cgroup")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// TempCgroup makes an empty child of the cgroup v2 root for the demo and
// tests, so their connect-time hooks touch nobody else's connections. Remove
// it with os.Remove once no process is left in it.
func TempCgroup(name string) (string, error) {
	root, err := CgroupRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(root, name+"-")
	if err != nil {
		return "", fmt.Errorf("create cgroup: %w", err)
	}
	return dir, nil
}

// JoinCgroup moves the whole calling process into the cgroup v2 directory
// dir (so connect-time hooks attached there see its connections) and
// returns a function that moves it back.
func JoinCgroup(dir string) (restore func() error, err error) {
	root, err := CgroupRoot()
	if err != nil {
		return nil, err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroup: %w", err)
	}
	orig := ""
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			orig = rest
		}
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		return nil, fmt.Errorf("join cgroup %s: %w", dir, err)
	}
	return func() error {
		if err := os.WriteFile(filepath.Join(root, orig, "cgroup.procs"), pid, 0); err != nil {
			return fmt.Errorf("return to cgroup %s: %w", orig, err)
		}
		return nil
	}, nil
}

// checkCgroup refuses a --cgroup that is not a cgroup v2 directory before
// anything is attached there.
func checkCgroup(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("--cgroup %s: %w", dir, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		root, _ := CgroupRoot()
		return fmt.Errorf("--cgroup %s: not a cgroup v2 directory (the connect-time hooks attach to one; the cgroup v2 root here is %s)", dir, root)
	}
	return nil
}

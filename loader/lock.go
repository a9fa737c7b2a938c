package loader

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockWaitNotice is how long a writer waits for the lock before it says so.
const LockWaitNotice = time.Second

// errNoPinDir is returned by lock when the pin directory does not exist
// and the writer does not create state (set-weight, the daemon's updates).
var errNoPinDir = errors.New("no pin directory")

// lock takes the namespace's writer lock: an exclusive flock on its pin
// directory, which every writer (apply, set-weight, down, the daemon) takes
// before it reads, decides and writes. create makes the directory when it is
// missing (apply); otherwise a missing directory is errNoPinDir. The unlock
// function removes the directory again when it is left empty, so a refused
// first apply leaves nothing behind.
func (t *Target) lock(create bool) (unlock func(), err error) {
	if err := ensureBPFFS(t.BPFFS); err != nil {
		return nil, err
	}
	for {
		if create {
			// Another writer may remove the empty directory, or the
			// shared parent, just as this one creates it: try again.
			if err := mkdirs(t.Dir); errors.Is(err, os.ErrNotExist) {
				continue
			} else if err != nil {
				return nil, fmt.Errorf("create pin directory: %w", err)
			}
		}
		fd, err := unix.Open(t.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if !create {
				return nil, errNoPinDir
			}
			continue // removed before we opened it
		}
		if err != nil {
			return nil, fmt.Errorf("open pin directory %s: %w", t.Dir, err)
		}
		if err := t.flock(fd); err != nil {
			unix.Close(fd)
			return nil, err
		}
		// The holder before us may have removed the directory (down, or
		// an empty one left by a refused apply): then lock the new one.
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(t.Dir, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return func() {
				removeIfEmpty(t.Dir)
				unix.Close(fd)
			}, nil
		}
		unix.Close(fd)
	}
}

// flock waits for the exclusive lock, saying after LockWaitNotice who holds it.
func (t *Target) flock(fd int) error {
	err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("lock %s: %w", t.Dir, err)
	}
	notice := time.AfterFunc(LockWaitNotice, func() {
		if t.Waiting != nil {
			t.Waiting(fmt.Sprintf("waiting for %s to finish its change (it holds the lock on %s)", lockHolder(fd), t.Dir))
		}
	})
	defer notice.Stop()
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", t.Dir, err)
		}
	}
}

// mkdirs makes the pin directory and its parent, either of which may exist.
func mkdirs(dir string) error {
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// removeIfEmpty removes a pin directory nothing was pinned in, and the
// shared parent once it is empty too.
func removeIfEmpty(dir string) {
	if os.Remove(dir) == nil {
		os.Remove(filepath.Dir(dir))
	}
}

// lockHolder names the process holding a flock on the file fd refers to,
// from /proc/locks: "pid 1234 (tcpshift apply -f a.yaml)".
func lockHolder(fd int) string {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return "another writer"
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "another writer"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF
		// Waiters show as "1: -> FLOCK ..."; they hold nothing.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid == os.Getpid() {
			continue
		}
		return describePid(pid)
	}
	return "another writer"
}

// describePid is "pid N (its command line)".
func describePid(pid int) string {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(cmd) == 0 {
		return fmt.Sprintf("pid %d", pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
}

// lockHeld reports whether a writer holds the namespace's lock now.
func (t *Target) lockHeld() bool {
	fd, err := unix.Open(t.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	unix.Flock(fd, unix.LOCK_UN)
	return false
}

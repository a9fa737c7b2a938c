package listener

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// isPermission reports whether err is EPERM or EACCES.
func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// inNetns runs fn on a dedicated OS thread switched into ns. If the thread
// cannot be switched back it stays locked, so the runtime discards it when
// the goroutine exits.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: it is in the wrong netns and must die.
			errc <- fmt.Errorf("return to original network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// fdInode returns the inode number of an open fd (for nsfs fds: the netns id).
func fdInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pids returns the numeric entries of /proc in ascending order.
func pids() ([]int, error) {
	des, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, de := range des {
		if pid, err := strconv.Atoi(de.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fds returns the fd numbers of pid in ascending order.
func fds(pid int) ([]int, error) {
	des, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(des))
	for _, de := range des {
		if fd, err := strconv.Atoi(de.Name()); err == nil {
			out = append(out, fd)
		}
	}
	slices.Sort(out)
	return out, nil
}

// fdLink returns readlink(/proc/PID/fd/FD).
func fdLink(pid, fd int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
}

// comm returns the command name of pid, or "?" if it is gone.
func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// scanOwners calls fn for every (pid, fd) whose fd is the socket with the
// given inode, lowest pid and fd first, until fn returns false. Processes
// that vanish are skipped; denied reports whether some /proc/PID/fd could not
// be read for lack of permission.
func scanOwners(inode uint64, fn func(pid, fd int) bool) (denied bool, err error) {
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	ps, err := pids()
	if err != nil {
		return false, err
	}
	for _, pid := range ps {
		fdl, err := fds(pid)
		if err != nil {
			if isPermission(err) {
				denied = true
			}
			continue // vanished, or a kernel thread
		}
		for _, fd := range fdl {
			link, err := fdLink(pid, fd)
			if err != nil {
				if isPermission(err) {
					denied = true
				}
				continue
			}
			if link == want && !fn(pid, fd) {
				return denied, nil
			}
		}
	}
	return denied, nil
}

// firstOwner returns the lowest (pid, fd) holding the socket inode.
func firstOwner(inode uint64) (pid, fd int, ok bool) {
	scanOwners(inode, func(p, f int) bool {
		pid, fd, ok = p, f, true
		return false
	})
	return pid, fd, ok
}

// dupFD copies fd of pid into this process with pidfd_getfd.
func dupFD(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d %d: %w", pid, fd, err)
	}
	return nfd, nil
}

// nsSource is a way to look at the sockets of one network namespace.
type nsSource struct {
	ino  uint64
	pid  int    // a process in the netns (read /proc/PID/net), or 0
	path string // an openable nsfs path (/proc/PID/fd/N, /run/netns/x) if pid == 0
}

// parseNetLink parses "net:[4026531840]".
func parseNetLink(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "net:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	return ino, err == nil
}

// netnsSources lists every network namespace we can see, except skip: those
// of processes, those held open as fds (e.g. by a test, or by "ip netns exec"
// parents) and those bind-mounted in /run/netns.
func netnsSources(skip uint64) []nsSource {
	seen := map[uint64]bool{skip: true}
	var out []nsSource
	ps, _ := pids()
	for _, pid := range ps {
		link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if err != nil {
			continue
		}
		if ino, ok := parseNetLink(link); ok && !seen[ino] {
			seen[ino] = true
			out = append(out, nsSource{ino: ino, pid: pid})
		}
	}
	// Namespaces with no process in them, kept alive by an fd or a mount.
	for _, pid := range ps {
		fdl, err := fds(pid)
		if err != nil {
			continue
		}
		for _, fd := range fdl {
			link, err := fdLink(pid, fd)
			if err != nil {
				continue
			}
			if ino, ok := parseNetLink(link); ok && !seen[ino] {
				seen[ino] = true
				out = append(out, nsSource{ino: ino, path: "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd)})
			}
		}
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		des, _ := os.ReadDir(dir)
		for _, de := range des {
			p := dir + "/" + de.Name()
			var st unix.Stat_t
			if unix.Stat(p, &st) != nil || seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
			out = append(out, nsSource{ino: st.Ino, path: p})
		}
	}
	return out
}

// tables returns the listening sockets of the namespace.
func (s nsSource) tables() ([]entry, error) {
	if s.pid != 0 {
		return readTables("/proc/" + strconv.Itoa(s.pid) + "/net")
	}
	h, err := netns.GetFromPath(s.path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if ino, err := fdInode(int(h)); err != nil || ino != s.ino {
		return nil, fs.ErrNotExist // the fd was reused meanwhile
	}
	var entries []entry
	err = inNetns(h, func() error {
		var err error
		entries, err = readTables("/proc/thread-self/net")
		return err
	})
	return entries, err
}

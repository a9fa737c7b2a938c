package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/daemon/reconcile"
)

// When the followed files are read after they changed: the reconcile loop
// syncs settle after the last event about them (its debounce), and not
// before every file written in place was closed (close-write: the watcher
// says it is busy), but never later than maxSettle after the first event
// (its max delay): a writer that never stops, or never closes, cannot
// starve reloads.
const (
	settle    = 100 * time.Millisecond
	maxSettle = time.Second
	// rescan is how often the followed paths are resolved again even
	// when no event said they changed (an ancestor replaced, say).
	rescan = time.Second
)

// watchMask is what inotify reports on each watched directory. The
// watcher uses inotify itself: fsnotify does not offer close-write.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// loadable reports whether a directory's entry is one apply -f and run -f
// read (istio.Load's rule).
func loadable(name string) bool {
	return slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(name)))
}

// fileID is a file's identity: what a path names, as opposed to the path.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{uint64(st.Dev), st.Ino}
}

// watchDir is one watched directory, by identity.
type watchDir struct {
	path  string
	id    fileID
	wd    int32
	all   bool            // a followed directory: every entry counts
	names map[string]bool // otherwise these entries only
}

// resolution is what a followed path named when it last existed.
type resolution struct {
	target string
	id     fileID // of a directory; files are replaced by every editor's save
}

// watcher follows paths, not the inodes it first saw: for every followed
// path it watches the directory holding it, the directory of every symlink
// met on the way to what it names, and that directory itself (or the file's
// directory). A rename or symlink swap anywhere on that way (an editor's
// save, `mv dir dir.old; ln -s dir.new dir`, Kubernetes' ..data swap) is an
// event in one of them; the paths are then resolved again, the watches
// follow, and a reload is asked for.
type watcher struct {
	log    *slog.Logger
	paths  []string
	fd     int
	file   *os.File
	notify func(reconcile.Event)
	done   chan struct{}
	// open holds files written and not closed yet, with their last
	// write: their writer is still at work, unless that was maxSettle ago.
	open map[openKey]time.Time

	dirs map[fileID]*watchDir
	byWd map[int32]*watchDir
	seen map[string]resolution
	// failed remembers directories that could not be watched, so that
	// a persisting failure is logged once.
	failed map[string]bool
}

type inEvent struct {
	wd   int32
	mask uint32
	name string
}

// watchFiles calls notify whenever a followed path changes what it holds or
// what it names, saying whether a file is still being written. stop ends it.
func watchFiles(paths []string, notify func(reconcile.Event), log *slog.Logger) (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify: %w", strings.Join(paths, ", "), err)
	}
	w := &watcher{log: log, paths: paths, fd: fd, file: os.NewFile(uintptr(fd), "inotify"),
		notify: notify, done: make(chan struct{}), open: map[openKey]time.Time{},
		dirs: map[fileID]*watchDir{}, byWd: map[int32]*watchDir{}, seen: map[string]resolution{}, failed: map[string]bool{}}
	if _, err := w.rescan(); err != nil {
		w.file.Close()
		return nil, err
	}
	events := make(chan []inEvent)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.read(events)
	}()
	go func() {
		defer wg.Done()
		w.loop(events)
		w.file.Close() // ends read
	}()
	return func() {
		close(w.done)
		wg.Wait()
	}, nil
}

// read passes the kernel's events on until the inotify file is closed.
func (w *watcher) read(out chan<- []inEvent) {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		var evs []inEvent
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent
			end := min(off+int(raw.Len), n)
			evs = append(evs, inEvent{wd: raw.Wd, mask: raw.Mask, name: strings.TrimRight(string(buf[off:end]), "\x00")})
			off = end
		}
		select {
		case out <- evs:
		case <-w.done:
			return
		}
	}
}

type openKey struct {
	wd   int32
	name string
}

func (w *watcher) loop(events <-chan []inEvent) {
	tick := time.NewTicker(rescan)
	defer tick.Stop()
	for {
		select {
		case evs := <-events:
			relevant, structural := false, false
			for _, ev := range evs {
				r, s := w.event(ev)
				relevant, structural = relevant || r, structural || s
			}
			if structural {
				if moved, _ := w.rescan(); moved {
					relevant = true
				}
			}
			if relevant {
				w.notify(reconcile.Event{Busy: w.busy()})
			}
		case <-tick.C:
			if moved, _ := w.rescan(); moved {
				w.notify(reconcile.Event{Busy: w.busy()})
			}
		case <-w.done:
			return
		}
	}
}

// busy reports whether a followed file is being written: written within
// maxSettle and not closed since.
func (w *watcher) busy() bool {
	for k, at := range w.open {
		if time.Since(at) < maxSettle {
			return true
		}
		delete(w.open, k) // a writer that kept its file open past maxSettle
	}
	return false
}

// event notes one event: relevant when it is about a followed file or
// directory, structural when what a followed path names may have changed.
func (w *watcher) event(ev inEvent) (relevant, structural bool) {
	if ev.mask&unix.IN_Q_OVERFLOW != 0 {
		clear(w.open)
		return true, true
	}
	d := w.byWd[ev.wd]
	if d == nil {
		return false, false
	}
	if ev.mask&unix.IN_IGNORED != 0 { // the directory was removed, or we let it go
		delete(w.byWd, ev.wd)
		if w.dirs[d.id] == d {
			delete(w.dirs, d.id)
		}
		return true, true
	}
	if ev.name == "" { // the directory itself
		moved := ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0
		return moved, moved
	}
	if !d.all && !d.names[ev.name] {
		return false, false
	}
	// Only files read count as being written: an editor's swap file,
	// kept open, must not hold reloads back.
	if d.names[ev.name] || loadable(ev.name) {
		k := openKey{ev.wd, ev.name}
		switch {
		case ev.mask&(unix.IN_CLOSE_WRITE|unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			delete(w.open, k)
		case ev.mask&unix.IN_MODIFY != 0:
			w.open[k] = time.Now()
		}
	}
	return true, ev.mask&(unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO) != 0
}

// rescan resolves the followed paths again and makes the watches follow.
// moved reports that a path names something else now, or that the watches
// changed; err is the first directory that could not be watched.
func (w *watcher) rescan() (moved bool, err error) {
	want := map[fileID]*watchDir{}
	add := func(dir, name string, all bool) {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			return
		}
		id := idOf(fi)
		d := want[id]
		if d == nil {
			d = &watchDir{path: dir, id: id, names: map[string]bool{}}
			want[id] = d
		}
		d.all = d.all || all
		if name != "" {
			d.names[name] = true
		}
	}
	follow := slices.Clone(w.paths)
	for i := 0; i < len(follow); i++ {
		p := follow[i]
		add(filepath.Dir(p), filepath.Base(p), false)
		target, links, rerr := resolvePath(p)
		for _, l := range links {
			add(filepath.Dir(l), filepath.Base(l), false)
		}
		if rerr != nil {
			continue // gone: its directory's events say when it is back
		}
		fi, serr := os.Stat(target)
		if serr != nil {
			continue
		}
		add(filepath.Dir(target), filepath.Base(target), false)
		r := resolution{target: target}
		if fi.IsDir() {
			r.id = idOf(fi)
			add(target, "", true)
			if i < len(w.paths) {
				// Entries that are symlinks are followed too: a
				// ConfigMap volume's files point through ..data.
				entries, _ := os.ReadDir(target)
				for _, e := range entries {
					if e.Type()&os.ModeSymlink != 0 && loadable(e.Name()) {
						follow = append(follow, filepath.Join(p, e.Name()))
					}
				}
			}
		}
		if old, ok := w.seen[p]; ok && old != r {
			w.log.Info("followed path replaced: following what it names now", "path", p, "now", target, "was", old.target)
			moved = true
		}
		w.seen[p] = r
	}

	for id, d := range want {
		if cur := w.dirs[id]; cur != nil {
			cur.all, cur.names = d.all, d.names
			continue
		}
		wd, aerr := unix.InotifyAddWatch(w.fd, d.path, watchMask)
		if aerr != nil {
			if err == nil {
				err = fmt.Errorf("watch %s: %w", d.path, aerr)
			}
			if !w.failed[d.path] {
				w.failed[d.path] = true
				w.log.Warn("cannot watch a directory on a followed path: its changes are seen within "+rescan.String()+" at best", "dir", d.path, "err", aerr)
			}
			continue
		}
		delete(w.failed, d.path)
		d.wd = int32(wd)
		// The kernel gives the same wd for an inode it watches already
		// (a directory replaced between our stat and the watch).
		if prev := w.byWd[d.wd]; prev != nil && w.dirs[prev.id] == prev {
			delete(w.dirs, prev.id)
		}
		w.dirs[id], w.byWd[d.wd] = d, d
		moved = true
	}
	for id, d := range w.dirs {
		if want[id] != nil {
			continue
		}
		unix.InotifyRmWatch(w.fd, uint32(d.wd))
		delete(w.dirs, id)
		if w.byWd[d.wd] == d {
			delete(w.byWd, d.wd)
		}
		moved = true
	}
	return moved, err
}

// maxLinks is the kernel's limit of symlinks met resolving one path.
const maxLinks = 40

// resolvePath resolves p (absolute) as the kernel does, and returns the
// symlinks met on the way: each of them can be swapped.
func resolvePath(p string) (target string, links []string, err error) {
	rest := strings.Split(p, "/")
	cur := "/"
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", links, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if len(links) == maxLinks {
			return "", links, &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		links = append(links, next)
		to, err := os.Readlink(next)
		if err != nil {
			return "", links, err
		}
		if filepath.IsAbs(to) {
			cur = "/"
		}
		rest = append(strings.Split(to, "/"), rest...)
	}
	return cur, links, nil
}

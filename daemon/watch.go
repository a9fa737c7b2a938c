package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle lets an editor finish writing before the file is read: events
// closer together than this make one reload.
const settle = 100 * time.Millisecond

// watchFiles sends on changed, after things settle, whenever a followed
// file changes: for a file, the directory holding it sees an event for it;
// for a directory, anything in it changes. Directories are watched, not
// files, so renames over them (editors, ConfigMap symlink swaps) are seen.
func watchFiles(paths []string, changed chan<- struct{}, done <-chan struct{}) (func() error, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", strings.Join(paths, ", "), err)
	}
	files, dirs := map[string]bool{}, map[string]bool{}
	for _, p := range paths {
		dir := filepath.Dir(p)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dir = p
			dirs[p] = true
		} else {
			files[p] = true
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	go func() {
		var timer <-chan time.Time
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Kubernetes swaps a "..data" symlink; anything else
				// in the directory is someone else's file.
				name := filepath.Clean(ev.Name)
				if files[name] || dirs[filepath.Dir(name)] || filepath.Base(name) == "..data" {
					timer = time.After(settle)
				}
			case <-timer:
				timer = nil
				select {
				case changed <- struct{}{}:
				default: // a reload is already pending
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			case <-done:
				return
			}
		}
	}()
	return w.Close, nil
}

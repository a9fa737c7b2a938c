package daemon

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle lets an editor finish writing before the file is read: events
// closer together than this make one reload.
const settle = 100 * time.Millisecond

// watchFile sends on changed, after things settle, whenever the directory
// holding path sees an event for the file. The directory is watched, not
// the file, so renames over it (editors, ConfigMap symlink swaps) are seen.
func watchFile(path string, changed chan<- struct{}, done <-chan struct{}) (func() error, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
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
				if filepath.Clean(ev.Name) == path || filepath.Base(ev.Name) == "..data" {
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

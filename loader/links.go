package loader

import (
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// LinkState is one pinned hook: the link, and the program it runs now.
type LinkState struct {
	Program   string
	Link      link.ID
	ProgramID ebpf.ProgramID
}

// Links reads the pinned links. A newer build's programs replace the old
// ones through these same links (link update), so hooks never detach.
func (t *Target) Links() ([]LinkState, error) {
	var out []LinkState
	for _, h := range hooks {
		l, err := link.LoadPinnedLink(filepath.Join(t.Dir, linkPin(h.prog)), nil)
		if err != nil {
			return nil, fmt.Errorf("open pinned %s link: %w", h.prog, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s link: %w", h.prog, err)
		}
		out = append(out, LinkState{h.prog, info.ID, info.Program})
	}
	return out, nil
}

package loader

import (
	"encoding/binary"
	"hash/fnv"
	"os"
	"path/filepath"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// progTag names the programs load would attach now: this build's BPF object
// and the constants it sets. The owner record keeps the tag of the ones
// attached, so an apply that would load the very same programs again keeps
// them: the verifier costs tens of milliseconds an apply, which tcpshift
// agent pays on every burst of cluster changes.
func (t *Target) progTag(seed uint64, every bool) (uint64, error) {
	cookie, err := t.cookie()
	if err != nil {
		return 0, err
	}
	h := fnv.New64a()
	h.Write([]byte(bpf.ObjectTag()))
	var b [17]byte
	binary.LittleEndian.PutUint64(b[0:], cookie)
	binary.LittleEndian.PutUint64(b[8:], seed)
	if every {
		b[16] = 1
	}
	h.Write(b[:])
	return h.Sum64() | 1, nil
}

// attached returns the pinned maps when the programs attached are those
// load would attach (same tag, every hook's link pinned); nil otherwise.
func (t *Target) attached() (*maps.Set, error) {
	o, ok, err := pinnedOwner(t.Dir)
	if err != nil || !ok || o.FlowSeed == 0 {
		return nil, err
	}
	want, err := t.progTag(o.FlowSeed, t.everyNetns(o))
	if err != nil || o.ProgTag != want {
		return nil, err
	}
	for _, h := range hooks {
		if _, err := os.Stat(filepath.Join(t.Dir, linkPin(h.prog))); err != nil {
			return nil, nil
		}
	}
	set, err := maps.Open(t.Dir)
	if err != nil {
		return nil, nil // not this build's maps: load says why
	}
	t.loadedTag = want
	return set, nil
}

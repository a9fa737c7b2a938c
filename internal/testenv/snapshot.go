package testenv

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader/sockdiag"
)

// KernelState is a snapshot of everything tcpshift can change in a test's
// world, as sorted text lines of the form "subject = value":
//
//   - fs:       every directory and file under the bpffs, by relative path;
//   - map:      every pinned map's info (type, sizes, max entries, flags, id)
//     and every entry as hex key = hex value; map-in-map values are inner
//     map ids, and the inner map's info and entries follow under
//     "<outer>[<key>]/inner"; socket maps hold socket cookies; sk_storage
//     maps (not iterable from userspace) only their info;
//   - link:     every pinned link's type, id, program id and attach target;
//   - pinned:   bpffs files that are no BPF object (maps.debug, progs.debug);
//   - attached: the programs attached to the namespace (sk_lookup) and to
//     the test's cgroup for each hook tcpshift uses;
//   - route:    every route of the namespace, all tables, IPv4 and IPv6;
//   - addr:     every address of the namespace (flags that change by
//     themselves, like tentative, left out); a snapshot waits up to 5s for
//     duplicate address detection to end, as the kernel adds routes then.
//
// Two snapshots compare with Diff. Nothing in a snapshot depends on time
// alone, so two snapshots with nothing done in between are equal (as long
// as no traffic runs: the data path writes counters and LRU maps).
type KernelState struct {
	lines []string
}

// Lines returns the snapshot's lines, sorted.
func (s *KernelState) Lines() []string { return slices.Clone(s.lines) }

// String returns the snapshot, one line per item.
func (s *KernelState) String() string { return strings.Join(s.lines, "\n") }

// KernelState takes a snapshot of the kernel state of the test's world. It
// fails the test when something cannot be read.
func (e *Env) KernelState() *KernelState {
	e.t.Helper()
	e.settleCloses()
	lines, err := e.kernelState()
	if err != nil {
		e.t.Fatalf("snapshot kernel state: %v", err)
	}
	slices.Sort(lines)
	return &KernelState{lines: lines}
}

// settleCloses waits (up to 2 s) until no TCP socket of the namespace is
// between its first FIN and CLOSE: sockops counts a connection's close (and
// its bytes) when the kernel gets there, after both ends returned from
// close(), and a snapshot taken meanwhile would see counters move that no
// command moved.
func (e *Env) settleCloses() {
	e.t.Helper()
	closing := func() (n int) {
		err := sockdiag.Walk(e.NS.Handle, nil, func(s *sockdiag.Socket) error {
			switch s.State {
			case tcpFinWait1, tcpFinWait2, tcpCloseWait, tcpLastAck, tcpClosing:
				n++
			}
			return nil
		})
		if err != nil {
			e.t.Fatalf("list sockets closing: %v", err)
		}
		return n
	}
	for deadline := time.Now().Add(2 * time.Second); closing() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// The kernel's TCP states a connection passes through as it closes.
const (
	tcpFinWait1  = 4
	tcpFinWait2  = 5
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// RequireUnchanged fails the test unless the kernel state is exactly
// before: for checking that a refused or failed command changed nothing.
func (e *Env) RequireUnchanged(before *KernelState) {
	e.t.Helper()
	if d := before.Diff(e.KernelState()); d != "" {
		e.t.Fatalf("kernel state changed:\n%s", d)
	}
}

// diffLimit bounds the lines Diff prints; diffWidth the characters of one
// value it shows.
const (
	diffLimit  = 40
	diffWidth  = 160
	diffGroups = 25
)

// group names the object a line is about: a map (with its inner maps and
// entries), or a kind of item (fs, link, attached, route, addr).
func group(subject string) string {
	kind, rest, _ := strings.Cut(subject, " ")
	if kind != "map" {
		return kind
	}
	name, _, _ := strings.Cut(rest, "[")
	return "map " + strings.TrimSuffix(name, "/entries")
}

// Diff returns "" when s and other hold the same lines, otherwise what
// differs, one line per item, s's lines marked "-" and other's "+", in
// subject order, at most about 40 lines. Long values are cut around their
// first difference. When there are more, a summary of the objects they
// belong to comes first.
func (s *KernelState) Diff(other *KernelState) string {
	var removed, added []string
	a, b := s.lines, other.lines
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || len(a) > 0 && a[0] < b[0]:
			removed, a = append(removed, a[0]), a[1:]
		case len(a) == 0 || b[0] < a[0]:
			added, b = append(added, b[0]), b[1:]
		default:
			a, b = a[1:], b[1:]
		}
	}
	if len(removed) == 0 && len(added) == 0 {
		return ""
	}

	// Pair a line that went with one that came for the same subject, so a
	// changed value shows as two adjacent lines.
	type item struct {
		subject, value string
		hasValue       bool
		sign           byte
		peer           string // the other side's value for the subject
		paired         bool
	}
	var items []item
	addedBySubject := map[string][]int{}
	for _, l := range added {
		subj, val, has := strings.Cut(l, " = ")
		addedBySubject[subj] = append(addedBySubject[subj], len(items))
		items = append(items, item{subject: subj, value: val, hasValue: has, sign: '+'})
	}
	for _, l := range removed {
		subj, val, has := strings.Cut(l, " = ")
		it := item{subject: subj, value: val, hasValue: has, sign: '-'}
		if idx := addedBySubject[subj]; len(idx) > 0 {
			peer := &items[idx[0]]
			addedBySubject[subj] = idx[1:]
			it.peer, it.paired = peer.value, true
			peer.peer, peer.paired = val, true
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(x, y item) int {
		if c := strings.Compare(x.subject, y.subject); c != 0 {
			return c
		}
		return int(y.sign) - int(x.sign) // "-" before "+"
	})

	var out strings.Builder
	fmt.Fprintf(&out, "kernel state differs (-before +after): %d line(s) gone, %d new\n", len(removed), len(added))
	if len(items) > diffLimit {
		// Too many to show: say first which objects they belong to.
		var groups []string
		count := map[string]int{}
		for _, it := range items {
			g := group(it.subject)
			if count[g] == 0 {
				groups = append(groups, g)
			}
			count[g]++
		}
		for i, g := range groups {
			if i == diffGroups {
				fmt.Fprintf(&out, "  ... and %d more objects\n", len(groups)-diffGroups)
				break
			}
			fmt.Fprintf(&out, "  %s: %d line(s)\n", g, count[g])
		}
	}
	for i, it := range items {
		if i == diffLimit {
			fmt.Fprintf(&out, "... and %d more\n", len(items)-diffLimit)
			break
		}
		val := it.value
		if it.paired {
			val = excerpt(val, firstDifference(val, it.peer))
		} else {
			val = excerpt(val, 0)
		}
		if !it.hasValue {
			fmt.Fprintf(&out, "%c %s\n", it.sign, it.subject)
		} else {
			fmt.Fprintf(&out, "%c %s = %s\n", it.sign, it.subject, val)
		}
	}
	return strings.TrimSuffix(out.String(), "\n")
}

func firstDifference(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// excerpt cuts a long value to about diffWidth characters around at.
func excerpt(v string, at int) string {
	if len(v) <= diffWidth {
		return v
	}
	start := max(0, at-diffWidth/4)
	end := min(len(v), start+diffWidth)
	start = max(0, end-diffWidth)
	var b strings.Builder
	if start > 0 {
		fmt.Fprintf(&b, "…[char %d] ", start)
	}
	b.WriteString(v[start:end])
	if end < len(v) {
		fmt.Fprintf(&b, " …[%d chars]", len(v))
	}
	return b.String()
}

// Hooks tcpshift attaches to a cgroup; sk_lookup goes on the namespace.
var cgroupHooks = []ebpf.AttachType{
	ebpf.AttachCGroupInet4Connect,
	ebpf.AttachCGroupInet6Connect,
	ebpf.AttachCgroupInet4GetPeername,
	ebpf.AttachCgroupInet6GetPeername,
	ebpf.AttachCGroupSockOps,
}

func (e *Env) kernelState() ([]string, error) {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	// bpffs: every directory and file, and what each pinned file holds.
	err := filepath.WalkDir(e.BPFFS, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(e.BPFFS, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			add("fs %s = dir %04o", rel, info.Mode().Perm())
			return nil
		}
		add("fs %s = file %04o", rel, info.Mode().Perm())
		return pinned(path, rel, add)
	})
	if err != nil {
		return nil, fmt.Errorf("bpffs %s: %w", e.BPFFS, err)
	}

	// Programs attached to the namespace and the cgroup, links or not.
	if err := attached("netns", int(e.NS.Handle), []ebpf.AttachType{ebpf.AttachSkLookup}, add); err != nil {
		return nil, err
	}
	cg, err := os.Open(e.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	defer cg.Close()
	if err := attached("cgroup", int(cg.Fd()), cgroupHooks, add); err != nil {
		return nil, err
	}

	// Routes and addresses of the namespace.
	h, err := netlink.NewHandleAt(e.NS.Handle)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace: %w", err)
	}
	defer h.Close()
	addrs, err := settledAddrs(h)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		add("addr %s", addrLine(a))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		add("route %s", routeLine(r))
	}
	return lines, nil
}

// pinned records the object pinned at path: a map, a link or a program.
func pinned(path, rel string, add func(string, ...any)) error {
	m, mapErr := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if mapErr == nil {
		defer m.Close()
		return dumpMap("map "+rel, m, add)
	}
	l, linkErr := link.LoadPinnedLink(path, nil)
	if linkErr == nil {
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("link %s: %w", rel, err)
		}
		add("link %s = %s", rel, linkLine(info))
		return nil
	}
	if errors.Is(mapErr, os.ErrNotExist) {
		// Not an object that BPF_OBJ_GET opens: the iterators bpf_preload
		// puts in every bpffs (maps.debug, progs.debug).
		add("pinned %s = no bpf object", rel)
		return nil
	}
	p, progErr := ebpf.LoadPinnedProgram(path, nil)
	if progErr == nil {
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("program %s: %w", rel, err)
		}
		id, _ := info.ID()
		add("prog %s = type %s id %d name %q tag %s", rel, info.Type, id, info.Name, info.Tag)
		return nil
	}
	return fmt.Errorf("pinned %s is neither map (%v) nor link (%v) nor program (%v)", rel, mapErr, linkErr, progErr)
}

// dumpMap records a map's info and entries under subject.
func dumpMap(subject string, m *ebpf.Map, add func(string, ...any)) error {
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("%s: info: %w", subject, err)
	}
	id, _ := info.ID()
	add("%s = %s key %d value %d max %d flags %#x id %d name %q", subject, info.Type,
		info.KeySize, info.ValueSize, info.MaxEntries, info.Flags, id, info.Name)

	switch info.Type {
	case ebpf.SkStorage, ebpf.InodeStorage, ebpf.TaskStorage, ebpf.CgroupStorage,
		ebpf.PerCPUCGroupStorage, ebpf.RingBuf, ebpf.PerfEventArray, ebpf.StructOpsMap,
		ebpf.BloomFilter, ebpf.Queue, ebpf.Stack, ebpf.Arena, ebpf.UserRingbuf:
		// Userspace cannot list these (or reading would consume them).
		add("%s/entries = not readable from userspace", subject)
		return nil
	case ebpf.SockMap:
		return dumpSockMap(subject, m, info, add)
	}

	perCPU := false
	switch info.Type {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash:
		perCPU = true
	}
	var (
		key    []byte
		value  = make([]byte, info.ValueSize)
		values [][]byte
		it     = m.Iterate()
	)
	if perCPU {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return err
		}
		values = make([][]byte, n)
	}
	// Arrays hold every key: their zero entries (most of a map sized for
	// a cluster) are counted, not listed; any change to one still shows.
	zeros := 0
	defer func() {
		if zeros > 0 {
			add("%s/zero entries = %d", subject, zeros)
		}
	}()
	for {
		var ok bool
		if perCPU {
			ok = it.Next(&key, values)
		} else {
			ok = it.Next(&key, value)
		}
		if !ok {
			break
		}
		if info.Type == ebpf.Array && !slices.ContainsFunc(value, func(b byte) bool { return b != 0 }) {
			zeros++
			continue
		}
		entry := fmt.Sprintf("%s[%s]", subject, hex.EncodeToString(key))
		switch {
		case perCPU:
			cpus := make([]string, len(values))
			for i, v := range values {
				cpus[i] = hex.EncodeToString(v)
			}
			add("%s = percpu %s", entry, strings.Join(cpus, "|"))
		case info.Type == ebpf.ArrayOfMaps || info.Type == ebpf.HashOfMaps:
			innerID := ebpf.MapID(binary.NativeEndian.Uint32(value))
			add("%s = inner map id %d", entry, innerID)
			inner, err := ebpf.NewMapFromID(innerID)
			if errors.Is(err, os.ErrNotExist) {
				add("%s/inner = gone", entry)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: open inner map %d: %w", entry, innerID, err)
			}
			err = dumpMap(entry+"/inner", inner, add)
			inner.Close()
			if err != nil {
				return err
			}
		case info.Type == ebpf.SockHash:
			add("%s = cookie %d", entry, binary.NativeEndian.Uint64(value))
		default:
			add("%s = %s", entry, hex.EncodeToString(value))
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: iterate: %w", subject, err)
	}
	return nil
}

// dumpSockMap records the cookies of a socket map's set slots: a lookup
// of an empty slot fails.
func dumpSockMap(subject string, m *ebpf.Map, info *ebpf.MapInfo, add func(string, ...any)) error {
	if info.ValueSize != 8 || info.KeySize != 4 {
		// The kernel returns cookies only for 8-byte values.
		add("%s/entries = not readable (key %d value %d)", subject, info.KeySize, info.ValueSize)
		return nil
	}
	for i := range info.MaxEntries {
		var cookie uint64
		err := m.Lookup(i, &cookie)
		if errors.Is(err, ebpf.ErrKeyNotExist) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: look up slot %d: %w", subject, i, err)
		}
		var key [4]byte
		binary.NativeEndian.PutUint32(key[:], i)
		add("%s[%s] = cookie %d", subject, hex.EncodeToString(key[:]), cookie)
	}
	return nil
}

func linkLine(info *link.Info) string {
	s := fmt.Sprintf("type %s id %d program %d", linkTypeName(info.Type), info.ID, info.Program)
	switch info.Type {
	case link.NetNsType:
		if ns := info.NetNs(); ns != nil {
			s += fmt.Sprintf(" netns-inode %d attach %s", ns.NetnsInode, ebpf.AttachType(ns.AttachType))
		}
	case link.CgroupType:
		if cg := info.Cgroup(); cg != nil {
			s += fmt.Sprintf(" cgroup-id %d attach %s", cg.CgroupId, ebpf.AttachType(cg.AttachType))
		}
	}
	return s
}

func linkTypeName(t link.Type) string {
	switch t {
	case link.NetNsType:
		return "netns"
	case link.CgroupType:
		return "cgroup"
	case link.IterType:
		return "iter"
	case link.TracingType:
		return "tracing"
	case link.XDPType:
		return "xdp"
	case link.TCXType:
		return "tcx"
	case link.NetkitType:
		return "netkit"
	}
	return fmt.Sprintf("%d", t)
}

// attached records the programs attached to target for each attach type,
// in the order they run.
func attached(what string, target int, types []ebpf.AttachType, add func(string, ...any)) error {
	for _, at := range types {
		res, err := link.QueryPrograms(link.QueryOptions{Target: target, Attach: at})
		if err != nil {
			return fmt.Errorf("query %s %s programs: %w", what, at, err)
		}
		var progs []string
		for _, p := range res.Programs {
			s := fmt.Sprintf("%d", p.ID)
			if l, ok := p.LinkID(); ok {
				s += fmt.Sprintf(" (link %d)", l)
			}
			progs = append(progs, s)
		}
		if len(progs) == 0 {
			progs = []string{"none"}
		}
		add("attached %s %s = %s", what, at, strings.Join(progs, ", "))
	}
	return nil
}

func routeLine(r netlink.Route) string {
	family := "ipv4"
	if r.Family == unix.AF_INET6 {
		family = "ipv6"
	}
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	s := fmt.Sprintf("table %d %s type %d %s scope %d proto %d dev %d metric %d",
		r.Table, family, r.Type, dst, r.Scope, r.Protocol, r.LinkIndex, r.Priority)
	if r.Src != nil {
		s += " src " + r.Src.String()
	}
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	for _, nh := range r.MultiPath {
		s += fmt.Sprintf(" nexthop dev %d via %s", nh.LinkIndex, nh.Gw)
	}
	return s
}

// settledAddrs lists the namespace's addresses once duplicate address
// detection is over (or after dadWait): the kernel adds the local route of
// an IPv6 address (a link-local one on a new veth, say) only then, by
// itself, so a snapshot taken meanwhile would differ from the next one.
func settledAddrs(h *netlink.Handle) ([]netlink.Addr, error) {
	deadline := time.Now().Add(dadWait)
	for {
		addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses: %w", err)
		}
		if (!slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.Flags&unix.IFA_F_TENTATIVE != 0 }) &&
			linkLocalsMade(h, addrs)) || time.Now().After(deadline) {
			return addrs, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const dadWait = 5 * time.Second

// linkLocalsMade reports whether every link that is up with a carrier has
// its IPv6 link-local address: the kernel adds it by itself once the
// carrier comes, which a loaded machine may take a while to do.
func linkLocalsMade(h *netlink.Handle, addrs []netlink.Addr) bool {
	links, err := h.LinkList()
	if err != nil {
		return true
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 || a.OperState != netlink.OperUp {
			continue
		}
		if !slices.ContainsFunc(addrs, func(ad netlink.Addr) bool {
			return ad.LinkIndex == a.Index && ad.IP.IsLinkLocalUnicast() && ad.IP.To4() == nil
		}) {
			return false
		}
	}
	return true
}

// addrFlagsMoving are address flags that change by themselves (duplicate
// address detection, lifetimes): not kept in snapshots.
const addrFlagsMoving = unix.IFA_F_TENTATIVE | unix.IFA_F_OPTIMISTIC | unix.IFA_F_DEPRECATED

func addrLine(a netlink.Addr) string {
	s := fmt.Sprintf("dev %d %s scope %d flags %#x", a.LinkIndex, a.IPNet, a.Scope, a.Flags&^addrFlagsMoving)
	if a.Label != "" {
		s += " label " + a.Label
	}
	if a.Peer != nil {
		s += " peer " + a.Peer.String()
	}
	if a.Broadcast != nil && !a.Broadcast.Equal(net.IPv4zero) {
		s += " brd " + a.Broadcast.String()
	}
	return s
}

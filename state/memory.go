package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
)

// Kind is how a map in Memory behaves where kernel map types differ.
type Kind int

const (
	// Hash: a missing key is missing (hash maps, socket maps, socket
	// storage).
	Hash Kind = iota
	// Array: every key below MaxEntries exists, zero until written, and
	// cannot be deleted.
	Array
	// OfMaps: an array of maps; a slot holds an inner map's id or nothing.
	OfMaps
)

// Spec describes one map of a Memory.
type Spec struct {
	Name               string
	Kind               Kind
	KeySize, ValueSize int
	MaxEntries         uint32
	InnerValueSize     int // OfMaps: the size of an inner map's value
}

// Memory is Maps in memory, for tests without root: values are kept as the
// kernel would keep them (native-endian, sizes checked against the specs),
// every write is logged, and Fault can fail any write.
type Memory struct {
	specs  map[string]Spec
	data   map[string]map[string][]byte
	inners map[uint32][]byte // inner map id → its value at key 0
	nextID uint32
	open   int // inner map handles open

	// Fault, when set, is asked before each write; an error it returns
	// fails that write, which then changes nothing.
	Fault func(Op) error
	// Log lists the writes made, in order.
	Log []Op
	n   int // writes asked for so far
}

// Op is one write Memory was asked to make.
type Op struct {
	N    int    // 1 for the first write asked of this Memory
	Kind string // "put", "delete", "batch", "swap"
	Map  string
	Key  string // the key's hex (the first key of a batch or swap)
}

func (o Op) String() string { return fmt.Sprintf("%s %s[%s]", o.Kind, o.Map, o.Key) }

// NewMemory makes empty maps after specs.
func NewMemory(specs []Spec) *Memory {
	m := &Memory{specs: map[string]Spec{}, data: map[string]map[string][]byte{}, inners: map[uint32][]byte{}, nextID: 1}
	for _, s := range specs {
		m.specs[s.Name] = s
		m.data[s.Name] = map[string][]byte{}
	}
	return m
}

// Clone copies the maps' contents (inner map ids included), not the fault,
// the log or the count of writes.
func (m *Memory) Clone() *Memory {
	c := &Memory{specs: m.specs, data: map[string]map[string][]byte{}, inners: map[uint32][]byte{}, nextID: m.nextID}
	for name, d := range m.data {
		c.data[name] = map[string][]byte{}
		for k, v := range d {
			c.data[name][k] = bytes.Clone(v)
		}
	}
	for id, v := range m.inners {
		c.inners[id] = bytes.Clone(v)
	}
	return c
}

// Writes returns how many writes were asked for, failed ones included.
func (m *Memory) Writes() int { return m.n }

// OpenInners returns how many inner map handles are open.
func (m *Memory) OpenInners() int { return m.open }

// Dump lists every entry as "map[key] = value" in hex, sorted; a slot of a
// map of maps shows the inner map's id and value.
func (m *Memory) Dump() []string {
	var out []string
	for name, d := range m.data {
		for k, v := range d {
			line := fmt.Sprintf("%s[%x] = %x", name, k, v)
			if m.specs[name].Kind == OfMaps {
				id := binary.NativeEndian.Uint32(v)
				line = fmt.Sprintf("%s[%x] = inner %d: %x", name, k, id, m.inners[id])
			}
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Memory) spec(name string) (Spec, error) {
	s, ok := m.specs[name]
	if !ok {
		return s, fmt.Errorf("no map %s", name)
	}
	return s, nil
}

// write counts a write and asks Fault about it.
func (m *Memory) write(kind, name string, key []byte) (Op, error) {
	m.n++
	op := Op{N: m.n, Kind: kind, Map: name, Key: fmt.Sprintf("%x", key)}
	if m.Fault != nil {
		if err := m.Fault(op); err != nil {
			return op, fmt.Errorf("%s: %w", op, err)
		}
	}
	return op, nil
}

func (m *Memory) Has(name string) bool { _, ok := m.specs[name]; return ok }

func (m *Memory) Lookup(name string, key, value any) error {
	b, err := m.LookupBytes(name, key)
	if err != nil {
		return err
	}
	if b == nil {
		return fmt.Errorf("map %s: %w", name, ErrNotExist)
	}
	return decode(b, value)
}

func (m *Memory) LookupBytes(name string, key any) ([]byte, error) {
	s, k, err := m.key(name, key)
	if err != nil {
		return nil, err
	}
	if v, ok := m.data[name][k]; ok {
		return bytes.Clone(v), nil
	}
	if s.Kind == Array {
		return make([]byte, s.ValueSize), nil
	}
	return nil, nil
}

// key checks and encodes a key of map name.
func (m *Memory) key(name string, key any) (Spec, string, error) {
	s, err := m.spec(name)
	if err != nil {
		return s, "", err
	}
	k, err := encode(key, s.KeySize)
	if err != nil {
		return s, "", fmt.Errorf("map %s key: %w", name, err)
	}
	if s.Kind != Hash && binary.NativeEndian.Uint32(k) >= s.MaxEntries {
		return s, "", fmt.Errorf("map %s: index %d beyond %d entries", name, binary.NativeEndian.Uint32(k), s.MaxEntries)
	}
	return s, string(k), nil
}

func (m *Memory) Put(name string, key, value any) error {
	s, k, err := m.key(name, key)
	if err != nil {
		return err
	}
	if s.Kind == OfMaps {
		return fmt.Errorf("map %s: a map of maps is written with SwapInner", name)
	}
	v, err := encode(value, s.ValueSize)
	if err != nil {
		return fmt.Errorf("map %s value: %w", name, err)
	}
	if _, ok := m.data[name][k]; !ok && s.Kind == Hash && len(m.data[name]) >= int(s.MaxEntries) && s.MaxEntries > 0 {
		return fmt.Errorf("map %s: full (%d entries)", name, s.MaxEntries)
	}
	op, err := m.write("put", name, []byte(k))
	if err != nil {
		return err
	}
	m.set(s, k, v)
	m.Log = append(m.Log, op)
	return nil
}

// set stores one entry; an array's zero value is stored as none, as an
// array entry never written reads.
func (m *Memory) set(s Spec, k string, v []byte) {
	if s.Kind == Array && !slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
		delete(m.data[s.Name], k)
		return
	}
	m.data[s.Name][k] = v
}

func (m *Memory) Delete(name string, key any) error {
	s, k, err := m.key(name, key)
	if err != nil {
		return err
	}
	if s.Kind == Array {
		return fmt.Errorf("map %s: an array's entries cannot be deleted", name)
	}
	op, err := m.write("delete", name, []byte(k))
	if err != nil {
		return err
	}
	if _, ok := m.data[name][k]; !ok {
		return fmt.Errorf("map %s: %w", name, ErrNotExist)
	}
	delete(m.data[name], k)
	m.Log = append(m.Log, op)
	return nil
}

// PutBatch writes every pair or, failing, none.
func (m *Memory) PutBatch(name string, keys, values any) error {
	kv, vv := reflect.ValueOf(keys), reflect.ValueOf(values)
	if kv.Kind() != reflect.Slice || vv.Kind() != reflect.Slice || kv.Len() != vv.Len() {
		return fmt.Errorf("map %s: batch of %T and %T", name, keys, values)
	}
	s, err := m.spec(name)
	if err != nil {
		return err
	}
	ks, vs := make([]string, kv.Len()), make([][]byte, kv.Len())
	for i := range ks {
		if _, ks[i], err = m.key(name, kv.Index(i).Interface()); err != nil {
			return err
		}
		if vs[i], err = encode(vv.Index(i).Interface(), s.ValueSize); err != nil {
			return fmt.Errorf("map %s value: %w", name, err)
		}
	}
	var first []byte
	if len(ks) > 0 {
		first = []byte(ks[0])
	}
	op, err := m.write("batch", name, first)
	if err != nil {
		return err
	}
	for i, k := range ks {
		m.set(s, k, vs[i])
	}
	m.Log = append(m.Log, op)
	return nil
}

// entries returns map name's keys in order: every index of an array (as
// its count: keyAt makes each), the filled ones of others.
func (m *Memory) entries(name string) (keys []string, n int, err error) {
	s, err := m.spec(name)
	if err != nil {
		return nil, 0, err
	}
	if s.Kind == Array {
		return nil, int(s.MaxEntries), nil
	}
	for k := range m.data[name] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, len(keys), nil
}

// keyAt is the ith key of entries' answer.
func keyAt(keys []string, i int) []byte {
	if keys == nil {
		return binary.NativeEndian.AppendUint32(nil, uint32(i))
	}
	return []byte(keys[i])
}

func (m *Memory) ReadBatch(name string, c *Cursor, keys, values any) (int, error) {
	all, total, err := m.entries(name)
	if err != nil {
		return 0, err
	}
	kv, vv := reflect.ValueOf(keys), reflect.ValueOf(values)
	n := 0
	for ; n < kv.Len() && c.Pos < total; n, c.Pos = n+1, c.Pos+1 {
		k := keyAt(all, c.Pos)
		v, err := m.LookupBytes(name, k)
		if err != nil {
			return n, err
		}
		if err := decode(k, kv.Index(n).Addr().Interface()); err != nil {
			return n, err
		}
		if err := decode(v, vv.Index(n).Addr().Interface()); err != nil {
			return n, err
		}
	}
	if c.Pos >= total {
		return n, fmt.Errorf("map %s: %w", name, ErrNotExist)
	}
	return n, nil
}

func (m *Memory) Iterate(name string) Iterator {
	keys, n, err := m.entries(name)
	return &memIterator{m: m, name: name, keys: keys, n: n, err: err}
}

type memIterator struct {
	m    *Memory
	name string
	keys []string
	i, n int
	err  error
}

func (it *memIterator) Next(key, value any) bool {
	if it.err != nil || it.i >= it.n {
		return false
	}
	k := keyAt(it.keys, it.i)
	it.i++
	v, err := it.m.LookupBytes(it.name, k)
	if err == nil {
		err = errors.Join(decode(k, key), decode(v, value))
	}
	it.err = err
	return err == nil
}

func (it *memIterator) Err() error { return it.err }

func (m *Memory) MaxEntries(name string) uint32 { return m.specs[name].MaxEntries }

type memInner struct {
	m      *Memory
	id     uint32
	closed bool
}

func (in *memInner) Lookup(key, value any) error {
	if k, err := encode(key, 4); err != nil || binary.NativeEndian.Uint32(k) != 0 {
		return fmt.Errorf("inner map %d: %w", in.id, ErrNotExist)
	}
	return decode(in.m.inners[in.id], value)
}

func (in *memInner) Close() error {
	if in.closed {
		return fmt.Errorf("inner map %d closed twice", in.id)
	}
	in.closed = true
	in.m.open--
	return nil
}

func (m *Memory) NewInner(name string, value any) (Inner, error) {
	s, err := m.spec(name)
	if err != nil {
		return nil, err
	}
	v, err := encode(value, s.InnerValueSize)
	if err != nil {
		return nil, fmt.Errorf("inner map of %s: %w", name, err)
	}
	id := m.nextID
	m.nextID++
	m.inners[id] = v
	m.open++
	return &memInner{m: m, id: id}, nil
}

func (m *Memory) OpenInner(id uint32) (Inner, error) {
	if _, ok := m.inners[id]; !ok {
		return nil, fmt.Errorf("inner map %d: %w", id, ErrNotExist)
	}
	m.open++
	return &memInner{m: m, id: id}, nil
}

// SwapInner sets every slot or, failing, none.
func (m *Memory) SwapInner(name string, keys []uint32, inners []Inner) error {
	if _, err := m.spec(name); err != nil {
		return err
	}
	slots := make([]string, len(keys))
	for i, key := range keys {
		var err error
		if _, slots[i], err = m.key(name, key); err != nil {
			return err
		}
		if in, ok := inners[i].(*memInner); inners[i] != nil && (!ok || in.closed) {
			return fmt.Errorf("map %s: slot %d given a closed or foreign inner map", name, key)
		}
	}
	var first []byte
	if len(keys) > 0 {
		first = binary.NativeEndian.AppendUint32(nil, keys[0])
	}
	op, err := m.write("swap", name, first)
	if err != nil {
		return err
	}
	for i, k := range slots {
		if inners[i] == nil {
			delete(m.data[name], k)
			continue
		}
		m.data[name][k] = binary.NativeEndian.AppendUint32(nil, inners[i].(*memInner).id)
	}
	m.Log = append(m.Log, op)
	return nil
}

// encode is a key or value as the kernel holds it; size, if not 0, is the
// size it must have.
func encode(v any, size int) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		var buf bytes.Buffer
		if err := binary.Write(&buf, binary.NativeEndian, v); err != nil {
			return nil, err
		}
		b = buf.Bytes()
	}
	if size != 0 && len(b) != size {
		return nil, fmt.Errorf("%T is %d bytes, the map's are %d", v, len(b), size)
	}
	return bytes.Clone(b), nil
}

func decode(b []byte, v any) error {
	if out, ok := v.(*[]byte); ok {
		*out = bytes.Clone(b)
		return nil
	}
	return binary.Read(bytes.NewReader(b), binary.NativeEndian, v)
}

// DiffDumps lists the lines of two dumps that differ: "-" those only in
// before, "+" those only in after; none when they are the same.
func DiffDumps(before, after []string) []string {
	var out []string
	for _, l := range before {
		if !slices.Contains(after, l) {
			out = append(out, "-"+l)
		}
	}
	for _, l := range after {
		if !slices.Contains(before, l) {
			out = append(out, "+"+l)
		}
	}
	return out
}

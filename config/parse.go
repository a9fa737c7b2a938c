package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	serviceFields  = []string{"name", "listen", "mode", "policy", "affinity", "health", "failover", "accounting", "claim", "shift", "subsets", "route", "status"}
	subsetFields   = []string{"endpoints"}
	routeFields    = []string{"subset", "weight"}
	affinityFields = []string{"key", "ttl"}

	yamlLineRE = regexp.MustCompile(`^line ([0-9]+): (.*)$`)
)

const noServicesMsg = "no services: a route config needs at least one (tcpshift down removes every service)"

// parser keeps the error that comes first in the file.
type parser struct {
	path   string
	err    *Error
	errCol int

	nEndpoints int     // endpoints seen so far in the file, for MaxTotalEndpoints
	eps        []epRef // the current service's valid endpoints

	// Services of every document of the file so far: names and frontends
	// are unique across documents, and MaxServices counts them all.
	nServices int
	names     map[string]int
	fronts    map[netip.AddrPort]frontend
}

// epRef locates a parsed endpoint, for checks made once its service is
// complete.
type epRef struct {
	addr  netip.AddrPort
	node  *yaml.Node
	field indexField
}

// indexField is the field of a list's element, "FIELD[I]", made into text
// only for an error: a file of ten thousand services lists a hundred
// thousand endpoints.
type indexField struct {
	list string
	i    int
}

func indexed(list string, i int) indexField { return indexField{list, i} }

func (f indexField) String() string { return f.list + "[" + strconv.Itoa(f.i) + "]" }

// endpointAddr parses an endpoint's address, naming its field only when it
// is wrong.
func (p *parser) endpointAddr(n *yaml.Node, f indexField) (netip.AddrPort, bool) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if ap, msg := parseAddrPort(n.Value, false); msg == "" {
			return ap, true
		}
	}
	return p.addr(n, f.String(), false)
}

func (p *parser) fail(n *yaml.Node, field, format string, args ...any) {
	p.failAt(n.Line, n.Column, field, format, args...)
}

// failAt is fail at a position rather than a node.
func (p *parser) failAt(line, col int, field, format string, args ...any) {
	if p.err != nil && (p.err.Line < line || p.err.Line == line && p.errCol <= col) {
		return
	}
	msg := oneLine(fmt.Sprintf(format, args...))
	p.err = &Error{Path: p.path, Line: line, Field: field, Msg: msg}
	p.errCol = col
}

// decode returns the documents of data (each a yaml.DocumentNode), none
// when data holds only comments.
func (p *parser) decode(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, &Error{Path: p.path, Msg: fmt.Sprintf("invalid yaml: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		switch err := dec.Decode(&doc); {
		case errors.Is(err, io.EOF):
			return docs, nil
		case err != nil:
			return nil, p.syntaxError(err)
		}
		docs = append(docs, &doc)
	}
}

func (p *parser) syntaxError(err error) *Error {
	msg := oneLine(strings.TrimPrefix(err.Error(), "yaml: "))
	// yaml.v3 leaves the line out when the problem is on the first line.
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if l, err := strconv.Atoi(m[1]); err == nil {
			line, msg = l, m[2]
		}
	}
	return &Error{Path: p.path, Line: line, Msg: "invalid yaml: " + msg}
}

func (p *parser) root(n *yaml.Node, cfg *Config) {
	if isNull(n) {
		p.fail(n, "services", noServicesMsg)
		return
	}
	haveServices := false
	ok := p.mapping(n, "", []string{"services"}, func(_ string, _, v *yaml.Node) {
		haveServices = true
		cfg.Services = append(cfg.Services, p.services(v, "services")...)
	})
	if ok && !haveServices {
		p.fail(n, "services", noServicesMsg)
	}
}

// frontend remembers the first service listening on an address.
type frontend struct {
	service string
	line    int
}

// services parses the services list.
func (p *parser) services(n *yaml.Node, field string) []Service {
	if isNull(n) {
		p.fail(n, field, noServicesMsg)
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, field, "expected a sequence, got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.fail(n, field, noServicesMsg)
		return nil
	}
	if p.names == nil {
		p.names = map[string]int{}
		p.fronts = map[netip.AddrPort]frontend{}
	}
	var out []Service
	for i, item := range n.Content {
		item = resolve(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		if p.nServices >= MaxServices {
			p.fail(item, f, "too many services (max %d)", MaxServices)
			break
		}
		p.nServices++
		out = append(out, p.service(item, f, p.names, p.fronts))
	}
	return out
}

// routeRef is a parsed route entry, resolved once all subsets are known.
type routeRef struct {
	subset string
	node   *yaml.Node
	field  string
	weight uint64
}

func (p *parser) service(n *yaml.Node, f string, names map[string]int, fronts map[netip.AddrPort]frontend) Service {
	s := Service{Line: n.Line, Mode: ModeAuto, Policy: PolicyRoundRobin, Failover: true, Accounting: true}
	var haveName, haveListen, haveSubsets, subsetsOK bool
	var routes []routeRef
	p.eps = nil
	ok := p.mapping(n, f, serviceFields, func(key string, _, v *yaml.Node) {
		ff := f + "." + key
		switch key {
		case "name":
			haveName = true
			name, ok := p.name(v, ff)
			if !ok {
				return
			}
			s.Name = name
			if first, dup := names[name]; dup {
				p.fail(v, ff, "duplicate service %q (first at line %d)", name, first)
				return
			}
			names[name] = v.Line
		case "listen":
			haveListen = true
			ap, ok := p.addr(v, ff, true)
			if !ok {
				return
			}
			s.Listen = ap
			if first, dup := fronts[ap]; dup {
				p.fail(v, ff, "listen address %s is already used by %s (line %d)", ap, first.service, first.line)
				return
			}
			who := f
			if s.Name != "" {
				who = fmt.Sprintf("service %q", s.Name)
			}
			fronts[ap] = frontend{service: who, line: v.Line}
		case "mode":
			if isNull(v) {
				return
			}
			if val, ok := p.scalar(v, ff, "a mode"); ok {
				if m := Mode(val); contains(modes, m) {
					s.Mode = m
				} else {
					p.fail(v, ff, "invalid mode %s (allowed: %s)", quote(val), join(modes))
				}
			}
		case "policy":
			if isNull(v) {
				return
			}
			if val, ok := p.scalar(v, ff, "a policy"); ok {
				if pol := Policy(val); contains(policies, pol) {
					s.Policy = pol
				} else {
					p.fail(v, ff, "invalid policy %s (allowed: %s)", quote(val), join(policies))
				}
			}
		case "affinity":
			s.Affinity = p.affinity(v, ff)
		case "health":
			s.Health = p.health(v, ff)
		case "failover":
			if b, ok := p.boolean(v, ff); ok {
				s.Failover = b
			}
		case "accounting":
			if b, ok := p.boolean(v, ff); ok {
				s.Accounting = b
			}
		case "claim":
			if b, ok := p.boolean(v, ff); ok {
				s.Claim = b
			}
		case "shift":
			s.Shift = p.shift(v, ff)
		case "status":
			// Written by tcpshift status -o yaml; apply ignores it.
		case "subsets":
			haveSubsets = true
			s.Subsets, subsetsOK = p.subsets(v, ff)
		case "route":
			routes = p.route(v, ff)
		}
	})
	if !ok {
		return s
	}
	// The service's own name may come after listen in the mapping.
	if haveListen && s.Name != "" && s.Listen.IsValid() {
		if fr := fronts[s.Listen]; fr.service == f {
			fr.service = fmt.Sprintf("service %q", s.Name)
			fronts[s.Listen] = fr
		}
	}
	if !haveName {
		p.fail(n, f+".name", "required field is missing")
	}
	if !haveListen {
		p.fail(n, f+".listen", "required field is missing")
	}
	if !haveSubsets {
		p.fail(n, f+".subsets", "required field is missing")
	}
	if s.Mode == ModeConnect && s.Listen.IsValid() {
		for _, e := range p.eps {
			if err := ConnectReaches(s.Listen, e.addr); err != nil {
				p.fail(e.node, e.field.String(), "%s", err)
			}
		}
	}
	if !subsetsOK {
		return s
	}
	for _, r := range routes {
		sub, ok := s.Subset(r.subset)
		if !ok {
			p.fail(r.node, r.field, "subset %s is not defined in subsets", quote(r.subset))
			continue
		}
		sub.Weight = r.weight
	}
	if s.Shift != nil && s.Shift.To != "" {
		if _, ok := s.Subset(s.Shift.To); !ok {
			p.fail(n, f+".shift.to", "subset %s is not defined in subsets", quote(s.Shift.To))
		}
	}
	return s
}

func (p *parser) affinity(n *yaml.Node, f string) *Affinity {
	if isNull(n) {
		return nil
	}
	a := &Affinity{TTL: DefaultAffinityTTL}
	haveKey := false
	ok := p.mapping(n, f, affinityFields, func(key string, _, v *yaml.Node) {
		ff := f + "." + key
		switch key {
		case "key":
			haveKey = true
			val, ok := p.scalar(v, ff, "an affinity key")
			if !ok {
				return
			}
			if val != AffinityKeyClient {
				p.fail(v, ff, "invalid affinity key %s (allowed: %s)", quote(val), AffinityKeyClient)
				return
			}
			a.Key = val
		case "ttl":
			if d, ok := p.duration(v, ff, "ttl"); ok {
				a.TTL = d
			}
		}
	})
	if ok && !haveKey {
		p.fail(n, f+".key", "required field is missing")
	}
	return a
}

// subsets parses the subsets mapping. ok reports whether it was a mapping, so
// that route entries can be checked against it.
func (p *parser) subsets(n *yaml.Node, f string) (subs []Subset, ok bool) {
	if isNull(n) {
		p.fail(n, f, "service has no subsets")
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, f, "expected a mapping of subset names, got %s", describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.fail(n, f, "service has no subsets")
		return nil, false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k, f, "subset names must be strings, got %s", describe(k))
			continue
		}
		name := k.Value
		sf := f + pathKey(name)
		if i/2 >= MaxSubsets {
			p.fail(k, sf, "too many subsets (max %d)", MaxSubsets)
			break
		}
		if first, dup := seen[name]; dup {
			p.fail(k, sf, "duplicate subset %s (first at line %d)", quote(name), first)
			continue
		}
		seen[name] = k.Line
		if msg := checkName(name); msg != "" {
			p.fail(k, sf, "%s", msg)
		}
		subs = append(subs, Subset{Name: name, Endpoints: p.subset(v, sf), Line: k.Line})
	}
	return subs, true
}

func (p *parser) subset(n *yaml.Node, f string) []netip.AddrPort {
	if isNull(n) {
		p.fail(n, f, "subset has no endpoints")
		return nil
	}
	var eps []netip.AddrPort
	haveEndpoints := false
	ok := p.mapping(n, f, subsetFields, func(_ string, _, v *yaml.Node) {
		haveEndpoints = true
		eps = p.endpoints(v, f+".endpoints")
	})
	if ok && !haveEndpoints {
		p.fail(n, f+".endpoints", "required field is missing")
	}
	return eps
}

func (p *parser) endpoints(n *yaml.Node, f string) []netip.AddrPort {
	if isNull(n) {
		p.fail(n, f, "subset has no endpoints")
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, f, "expected a sequence of addresses, got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.fail(n, f, "subset has no endpoints")
		return nil
	}
	seen := map[netip.AddrPort]int{}
	var eps []netip.AddrPort
	for i, e := range n.Content {
		e = resolve(e)
		ef := indexed(f, i)
		if i >= MaxEndpoints {
			p.fail(e, ef.String(), "too many endpoints (max %d)", MaxEndpoints)
			break
		}
		// Each service's endpoint is an endpoint id of its own in the
		// kernel, so an address listed twice counts twice.
		p.nEndpoints++
		if p.nEndpoints == MaxTotalEndpoints+1 {
			p.fail(e, ef.String(), "endpoint %d of the file: at most %d endpoints per network namespace (all services together)",
				p.nEndpoints, MaxTotalEndpoints)
		}
		ap, ok := p.endpointAddr(e, ef)
		if !ok {
			continue
		}
		if first, dup := seen[ap]; dup {
			p.fail(e, ef.String(), "duplicate endpoint %s (first at line %d)", ap, first)
			continue
		}
		seen[ap] = e.Line
		eps = append(eps, ap)
		p.eps = append(p.eps, epRef{addr: ap, node: e, field: ef})
	}
	return eps
}

func (p *parser) route(n *yaml.Node, f string) []routeRef {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, f, "expected a sequence, got %s", describe(n))
		return nil
	}
	routed := map[string]int{}
	var refs []routeRef
	for i, e := range n.Content {
		e = resolve(e)
		ef := fmt.Sprintf("%s[%d]", f, i)
		var subNode, weightNode *yaml.Node
		ok := p.mapping(e, ef, routeFields, func(key string, _, v *yaml.Node) {
			if key == "subset" {
				subNode = v
			} else {
				weightNode = v
			}
		})
		if !ok {
			continue
		}
		if subNode == nil {
			p.fail(e, ef+".subset", "required field is missing")
		}
		if weightNode == nil {
			p.fail(e, ef+".weight", "required field is missing")
		}
		ref := routeRef{node: subNode, field: ef + ".subset"}
		valid := subNode != nil && weightNode != nil
		if subNode != nil {
			if name, ok := p.scalar(subNode, ref.field, "a subset name"); !ok {
				valid = false
			} else if isNull(subNode) || name == "" {
				p.fail(subNode, ref.field, "must not be empty")
				valid = false
			} else if first, dup := routed[name]; dup {
				p.fail(subNode, ref.field, "subset %s is routed more than once (first at line %d)", quote(name), first)
				valid = false
			} else {
				routed[name] = subNode.Line
				ref.subset = name
			}
		}
		if weightNode != nil {
			w, msg := parseWeight(weightNode)
			switch {
			case msg != "":
				p.fail(weightNode, ef+".weight", "%s", msg)
				valid = false
			default:
				ref.weight = w
			}
		}
		if valid {
			refs = append(refs, ref)
		}
	}
	return refs
}

// mapping checks that n is a mapping and calls fn for each known field, in
// file order. Non-string keys, duplicate keys and unknown fields are errors.
// It reports whether n was a mapping.
func (p *parser) mapping(n *yaml.Node, field string, known []string, fn func(key string, k, v *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		p.fail(n, field, "expected a mapping, got %s", describe(n))
		return false
	}
	keyField := func(k *yaml.Node) string {
		if field == "" {
			return k.Value
		}
		return field + pathKey(k.Value)
	}
	seen := keyLines{follow: true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k, field, "field names must be strings, got %s", describe(k))
			continue
		}
		if first, dup := seen.first(n.Content[:i], k.Value); dup {
			p.fail(k, keyField(k), "duplicate key %s (first at line %d)", quote(k.Value), first)
			continue
		}
		if !contains(known, k.Value) {
			p.fail(k, keyField(k), "unknown field %s", quote(k.Value))
			continue
		}
		fn(k.Value, k, v)
	}
	return true
}

// scalar returns the text of a scalar node (empty for null).
func (p *parser) scalar(n *yaml.Node, field, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.fail(n, field, "expected %s, got %s", what, describe(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

func (p *parser) name(n *yaml.Node, field string) (string, bool) {
	val, ok := p.scalar(n, field, "a name")
	if !ok {
		return "", false
	}
	if msg := checkName(val); msg != "" {
		p.fail(n, field, "%s", msg)
		return "", false
	}
	return val, true
}

func (p *parser) addr(n *yaml.Node, field string, listen bool) (netip.AddrPort, bool) {
	val, ok := p.scalar(n, field, "an IP:PORT address")
	if !ok {
		return netip.AddrPort{}, false
	}
	ap, msg := parseAddrPort(val, listen)
	if msg != "" {
		p.fail(n, field, "%s", msg)
		return netip.AddrPort{}, false
	}
	return ap, true
}

// checkName returns why s is not a valid service or subset name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "name must not be empty"
	case len(s) > MaxNameLen:
		return fmt.Sprintf("name %s is too long (%d bytes, max %d)", quote(s), len(s), MaxNameLen)
	case !isName(s):
		return fmt.Sprintf("invalid name %s: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", quote(s))
	}
	return ""
}

// parseWeight parses a route weight, an integer in 0..2^64-1. The message is
// empty on success.
func parseWeight(n *yaml.Node) (uint64, string) {
	const rangeMsg = "weight %s is out of range 0-18446744073709551615"
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Sprintf("weight must be an integer, got %s", describe(n))
	}
	v := strings.ReplaceAll(n.Value, "_", "")
	switch n.ShortTag() {
	case "!!int":
		if strings.HasPrefix(v, "-") {
			if i, err := strconv.ParseInt(v, 0, 64); err == nil && i == 0 {
				return 0, ""
			}
			return 0, fmt.Sprintf(rangeMsg, n.Value)
		}
		w, err := strconv.ParseUint(strings.TrimPrefix(v, "+"), 0, 64)
		if err != nil {
			return 0, fmt.Sprintf(rangeMsg, n.Value)
		}
		return w, ""
	case "!!float":
		// yaml.v3 resolves decimal integers that do not fit in 64 bits (and
		// ones like 080 that are not valid octal) as floats.
		if isInteger(v) {
			b, ok := new(big.Int).SetString(v, 10)
			if ok && b.Sign() >= 0 && b.IsUint64() {
				return b.Uint64(), ""
			}
			return 0, fmt.Sprintf(rangeMsg, n.Value)
		}
	}
	return 0, fmt.Sprintf("weight must be an integer, got %s", describe(n))
}

// resolve follows an alias to the node it refers to.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the kind of a node for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return "string " + quote(n.Value)
		case "!!int":
			return "integer " + short(n.Value)
		case "!!float":
			return "number " + short(n.Value)
		case "!!bool":
			return "boolean " + short(n.Value)
		}
		return quote(n.Value)
	}
	return "an unexpected yaml node"
}

// quote quotes s for a message, shortening very long values.
func quote(s string) string {
	return strconv.Quote(short(s))
}

// oneLine replaces control characters so that a message stays on one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// short shortens very long values for messages.
func short(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// pathKey formats a mapping key as a field path element.
func pathKey(key string) string {
	if isPathKey(key) {
		return "." + key
	}
	return "[" + quote(key) + "]"
}

// isPathKey reports whether a key reads as .key in a field path: letters,
// digits, '-', '_' and '.' (a loop, not a regexp: a file of ten thousand
// services has a hundred thousand keys).
func isPathKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if !alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.' {
			return false
		}
	}
	return s != ""
}

// isName reports whether s is letters, digits, '-', '_' and '.', starting
// and ending with a letter or digit.
func isName(s string) bool {
	return isPathKey(s) && alnum(s[0]) && alnum(s[len(s)-1])
}

// isInteger reports whether s is decimal digits after an optional sign.
func isInteger(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func join[T ~string](list []T) string {
	s := make([]string, len(list))
	for i, v := range list {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

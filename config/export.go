package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes cfg as a route config in the file format, so that Parse
// reads the same services back (Path and Line fields aside):
//
//	services:
//	- name: tcp-echo
//	  listen: 127.0.0.100:9000
//	  mode: lookup
//	  policy: roundrobin
//	  affinity: {key: client, ttl: 30s}
//	  health: {interval: 2s, timeout: 1s, rise: 2, fall: 3, passive: true}
//	  failover: false
//	  claim: true
//	  subsets:
//	    v1: {endpoints: [127.0.0.1:9001]}
//	    v2: {endpoints: ['[::1]:9002']}
//	  route:
//	  - {subset: v1, weight: 80}
//	  - {subset: v2, weight: 0}
//	  status: ...
//
// mode and policy are always written, affinity and health when set,
// failover only when false and claim only when true; subsets and their
// endpoints keep their order and route lists every subset, weight 0
// included. When status is not nil and returns a non-nil value for a
// service's name, that value is written as YAML under the service's status
// key, last (Parse ignores it).
func Marshal(cfg *Config, status func(name string) any) ([]byte, error) {
	if cfg == nil {
		return nil, errors.New("marshal route config: no config")
	}
	var b bytes.Buffer
	if len(cfg.Services) == 0 {
		b.WriteString("services: []\n")
		return b.Bytes(), nil
	}
	b.WriteString("services:\n")
	for i := range cfg.Services {
		if err := writeService(&b, &cfg.Services[i], status); err != nil {
			return nil, fmt.Errorf("marshal route config: services[%d] (%s): %w", i, cfg.Services[i].Name, err)
		}
	}
	// A safety net: whatever went under status, the text must be YAML.
	var doc yaml.Node
	if err := yaml.Unmarshal(b.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("marshal route config: wrote invalid yaml: %w", err)
	}
	return b.Bytes(), nil
}

func writeService(b *bytes.Buffer, s *Service, status func(name string) any) error {
	listen, err := addrText(s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mode, policy := s.Mode, s.Policy
	if mode == "" {
		mode = ModeAuto
	}
	if policy == "" {
		policy = PolicyRoundRobin
	}
	fmt.Fprintf(b, "- name: %s\n", scalarText(s.Name))
	fmt.Fprintf(b, "  listen: %s\n", listen)
	fmt.Fprintf(b, "  mode: %s\n", scalarText(string(mode)))
	fmt.Fprintf(b, "  policy: %s\n", scalarText(string(policy)))
	if a := s.Affinity; a != nil {
		key := a.Key
		if key == "" {
			key = AffinityKeyClient
		}
		fmt.Fprintf(b, "  affinity: {key: %s, ttl: %s}\n", scalarText(key), durationText(a.TTL))
	}
	if h := s.Health; h != nil {
		fmt.Fprintf(b, "  health: {interval: %s, timeout: %s, rise: %d, fall: %d, passive: %t}\n",
			durationText(h.Interval), durationText(h.Timeout), h.Rise, h.Fall, h.Passive)
	}
	if !s.Failover {
		b.WriteString("  failover: false\n")
	}
	if !s.Accounting {
		b.WriteString("  accounting: false\n")
	}
	if s.Claim {
		b.WriteString("  claim: true\n")
	}
	if len(s.Subsets) == 0 {
		b.WriteString("  subsets: {}\n")
	} else {
		b.WriteString("  subsets:\n")
		for _, sub := range s.Subsets {
			eps := make([]string, len(sub.Endpoints))
			for i, e := range sub.Endpoints {
				if eps[i], err = addrText(e); err != nil {
					return fmt.Errorf("subset %s: endpoint %d: %w", sub.Name, i, err)
				}
			}
			fmt.Fprintf(b, "    %s: {endpoints: [%s]}\n", scalarText(sub.Name), strings.Join(eps, ", "))
		}
		b.WriteString("  route:\n")
		for _, sub := range s.Subsets {
			fmt.Fprintf(b, "  - {subset: %s, weight: %d}\n", scalarText(sub.Name), sub.Weight)
		}
	}
	if status == nil {
		return nil
	}
	v := status(s.Name)
	if v == nil {
		return nil
	}
	return writeStatus(b, v)
}

// writeStatus writes v under a service's status key.
func writeStatus(b *bytes.Buffer, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("status: %v", r)
		}
	}()
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	// Written as the mapping {status: v} and then indented as a whole, v
	// keeps its layout relative to the key: block scalars' indentation
	// indicators included.
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "status"}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{key, &n}}); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if l != "" {
			b.WriteString("  ")
			b.WriteString(l)
		}
		b.WriteString("\n")
	}
	return nil
}

// addrText formats an address as the file writes it: IPv6 in brackets and
// quotes (a flow sequence would take a leading '[' for its own).
func addrText(ap netip.AddrPort) (string, error) {
	if !ap.IsValid() {
		return "", errors.New("address is not set")
	}
	if ap.Addr().Is4() {
		return ap.String(), nil
	}
	return "'" + ap.String() + "'", nil
}

func durationText(d time.Duration) string {
	return scalarText(d.String())
}

// plainRE matches strings that can be written unquoted, in block and flow
// context alike, if YAML reads them as strings.
var plainRE = regexp.MustCompile(`^[a-zA-Z0-9_]([-a-zA-Z0-9_.]*[a-zA-Z0-9_.])?$`)

// scalarText writes s so that YAML reads it back as the string s: plain
// when that is safe, double-quoted otherwise (such as a name "true" or
// "1e3", which plain would make a boolean or a number).
func scalarText(s string) string {
	if plainRE.MatchString(s) && readsAsString(s) {
		return s
	}
	return strconv.Quote(s)
}

// readsAsString reports whether the plain scalar s resolves to the string s.
func readsAsString(s string) bool {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil || len(doc.Content) != 1 {
		return false
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == s
}

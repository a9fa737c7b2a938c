// Package config parses and validates the tcpshift route configuration.
//
// The file is YAML and borrows Istio's vocabulary:
//
//	services:                         # at least one service
//	- name: tcp-echo
//	  listen: 127.0.0.100:9000        # 0.0.0.0:PORT or [::]:PORT = any local address
//	  mode: lookup                    # auto (default) | lookup | connect | proxy
//	  policy: roundrobin              # roundrobin (default) | random
//	  affinity: {key: client, ttl: 30s}  # optional
//	  subsets:
//	    v1: {endpoints: [127.0.0.1:9001]}
//	    v2: {endpoints: [127.0.0.1:9002]}
//	  route:
//	  - {subset: v1, weight: 80}
//	  - {subset: v2, weight: 20}
//	  health: {interval: 2s, timeout: 1s, rise: 2, fall: 3, passive: true}  # optional
//	  failover: true                  # a subset all down gives its share to the others
//	  accounting: true                # count connections and bytes per endpoint
//	  claim: false                    # true: lookup and proxy mode may take a routed address
//	  status: ...                     # any YAML: written by tcpshift status -o yaml; apply ignores it
//
// claim: true lets a lookup- or proxy-mode service take a frontend address
// that this host routes elsewhere today (tcpshift adds a local route for it,
// so every connection to that address, on any port and protocol, stays on
// this host). The loader checks the routes; this package only parses the
// field.
//
// A service's status key is written by `tcpshift status -o yaml` (see
// [Marshal]) with the service's live figures; apply ignores it, whatever it
// holds, so that output can be applied again.
//
// Rules beyond the syntax:
//
//   - a file holds at most [MaxFileSize] bytes and at least one service
//     (`tcpshift down` removes every service);
//   - at most [MaxServices] services, [MaxSubsets] subsets per service,
//     [MaxEndpoints] endpoints per subset and [MaxTotalEndpoints] endpoints in
//     the whole file (an endpoint listed by two services counts twice);
//   - listen and endpoint addresses are unicast: no multicast address, no
//     255.255.255.255, no port 0; only listen may be 0.0.0.0 or [::];
//   - with mode: connect, an IPv4 frontend (0.0.0.0 included) only reaches
//     IPv4 endpoints, see [ConnectReaches];
//   - a file may hold several documents (---), whose services are one list
//     (see [Documents]);
//   - a key given twice in one mapping is refused, anywhere (see
//     [FirstDuplicate]).
//
// The YAML node tree is walked by hand so that every problem can be reported
// as a single line "FILE:LINE: FIELD: message" (see [Error]).
package config

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits imposed by the fixed sizes of the BPF maps.
const (
	MaxServices  = 16384
	MaxSubsets   = 16   // per service
	MaxEndpoints = 1024 // per subset
	MaxNameLen   = 63   // service name and subset name, bytes

	// MaxTotalEndpoints is the number of endpoints of all services together
	// in one network namespace; each endpoint of each service is counted.
	MaxTotalEndpoints = 131072
)

// MaxFileSize is the largest route config accepted, in bytes.
const MaxFileSize = 16 << 20

// DefaultAffinityTTL is used when an affinity key is given without a ttl.
const DefaultAffinityTTL = 30 * time.Second

// Mode selects how connections to a frontend are steered.
type Mode string

// Modes.
const (
	ModeAuto    Mode = "auto"
	ModeLookup  Mode = "lookup"
	ModeConnect Mode = "connect"
	ModeProxy   Mode = "proxy"
)

var modes = []Mode{ModeAuto, ModeLookup, ModeConnect, ModeProxy}

// Policy selects how a subset endpoint is chosen.
type Policy string

// Policies.
const (
	PolicyRoundRobin Policy = "roundrobin"
	PolicyRandom     Policy = "random"
)

var policies = []Policy{PolicyRoundRobin, PolicyRandom}

// AffinityKeyClient pins a client (source address) to the subset it got first.
const AffinityKeyClient = "client"

// Config is a parsed and validated route configuration.
type Config struct {
	Path     string    // file name given to Parse/Load, used in errors
	Services []Service // in file order
}

// Service is one frontend and the subsets its traffic is shifted between.
type Service struct {
	Name     string
	Listen   netip.AddrPort // IPv4 (also IPv4-mapped IPv6) is stored as plain 4-byte address
	Mode     Mode           // ModeAuto when not given
	Policy   Policy         // PolicyRoundRobin when not given
	Affinity *Affinity      // nil when absent
	Health   *Health        // nil when absent: no checks
	// Failover gives the share of a subset whose endpoints are all down to
	// the other subsets (default true); false refuses those connections.
	Failover bool
	// Accounting lets sockops count the service's connections and bytes per
	// endpoint (default true); false saves that per-connection cost.
	Accounting bool
	// Claim lets a lookup- or proxy-mode service take a frontend address
	// that this host routes elsewhere (the loader adds a local route for
	// it); default false.
	Claim bool
	// Shift is a progressive shift tcpshift run carries out; nil for none.
	Shift   *Shift
	Subsets []Subset // in file order
	Line    int      // line of the service's list item
}

// Affinity makes a client stick to one subset for TTL.
type Affinity struct {
	Key string // always AffinityKeyClient
	TTL time.Duration
}

// Subset is a named group of backend endpoints with a route weight.
type Subset struct {
	Name      string
	Endpoints []netip.AddrPort
	Weight    uint64 // from route; 0 when the subset has no route entry
	Line      int    // line of the subset's key in the subsets mapping
}

// Load reads the file at path and parses it with Parse. A file bigger than
// MaxFileSize is refused without being read.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, tooBig(path, fi.Size())
	}
	// The file may be no regular file, or grow after Stat.
	data, over, err := readLimited(f)
	if err != nil {
		return nil, err
	}
	if over {
		return nil, tooBigStream(path)
	}
	return Parse(path, data)
}

// LoadReader reads a route config from r, at most MaxFileSize+1 bytes of it,
// and parses it with Parse; name stands for the file in errors and
// Config.Path (such as "stdin").
func LoadReader(name string, r io.Reader) (*Config, error) {
	data, over, err := readLimited(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if over {
		return nil, tooBigStream(name)
	}
	return Parse(name, data)
}

// readLimited reads r to the end, but no more than MaxFileSize+1 bytes; over
// reports that r holds more than MaxFileSize.
func readLimited(r io.Reader) (data []byte, over bool, err error) {
	data, err = io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, false, err
	}
	return data, len(data) > MaxFileSize, nil
}

const sizeLimitMsg = "limit for a route config"

// tooBig refuses a file of size bytes.
func tooBig(path string, size int64) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf("%s is over the %s %s", mib(size), mib(MaxFileSize), sizeLimitMsg)}
}

// tooBigStream refuses a file that goes on past MaxFileSize bytes.
func tooBigStream(path string) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf("larger than the %s %s", mib(MaxFileSize), sizeLimitMsg)}
}

// mib formats a size in MiB with one decimal, rounded up so that a size
// over a limit never reads as the limit.
func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", math.Ceil(float64(n)*10/(1<<20))/10)
}

// Parse parses and validates data; path is only used in errors and
// Config.Path. data may hold several YAML documents (separated by ---):
// their services are merged, see [Documents]. On failure the error is an
// *Error describing the first problem in file order.
func Parse(path string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, tooBig(path, int64(len(data)))
	}
	d := NewDocuments(path)
	docs, err := d.p.decode(data)
	if err != nil {
		return nil, err
	}
	for _, doc := range docs {
		if err := d.Add(doc); err != nil {
			return nil, err
		}
	}
	return d.Config()
}

// Service returns the service called name.
func (c *Config) Service(name string) (*Service, bool) {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i], true
		}
	}
	return nil, false
}

// Subset returns the subset called name.
func (s *Service) Subset(name string) (*Subset, bool) {
	for i := range s.Subsets {
		if s.Subsets[i].Name == name {
			return &s.Subsets[i], true
		}
	}
	return nil, false
}

// Wildcard reports whether Listen is 0.0.0.0 or ::.
func (s *Service) Wildcard() bool {
	return s.Listen.Addr().IsUnspecified()
}

// ParseDocument parses one route config document already decoded from a
// file of several (as `apply -f` reads Istio's multi-document files); line
// numbers are the file's. A file of several such documents is parsed with
// [Documents].
func ParseDocument(path string, doc *yaml.Node) (*Config, error) {
	d := NewDocuments(path)
	if err := d.Add(doc); err != nil {
		return nil, err
	}
	return d.Config()
}

package istio

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// Combine puts tcpshift's own services (native, may be nil) and the derived
// ones into one config. A name or frontend both use is refused: the two
// vocabularies must not fight over a service.
func Combine(native *config.Config, res *Result) (*config.Config, error) {
	cfg := &config.Config{Path: "<route config and objects>"}
	names := map[string]string{}
	fronts := map[netip.AddrPort]string{}
	if native != nil {
		cfg.Path = native.Path
		for _, s := range native.Services {
			names[s.Name] = "the route config " + native.Path
			fronts[s.Listen] = s.Name
			cfg.Services = append(cfg.Services, s)
		}
	}
	for _, s := range res.Services {
		who := res.OriginText(s.Name)
		if prev, ok := names[s.Name]; ok {
			return nil, fmt.Errorf("service %s from %s: %s has a service of that name too", s.Name, who, prev)
		}
		if prev, ok := fronts[s.Listen]; ok {
			return nil, fmt.Errorf("service %s from %s listens on %s, as service %s does", s.Name, who, s.Listen, prev)
		}
		names[s.Name] = who
		fronts[s.Listen] = s.Name
		cfg.Services = append(cfg.Services, s)
	}
	return cfg, nil
}

// OriginText names the objects behind a derived service, for status.
func (r *Result) OriginText(service string) string {
	var s []string
	for _, k := range r.Origins[service] {
		s = append(s, k.String())
	}
	return strings.Join(s, ", ")
}

// DecodeStored reads back an object kept with the namespace's state.
func DecodeStored(k Key, text []byte) (*Object, error) {
	docs, err := Decode("stored "+k.String(), text)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 || docs[0].Object == nil || docs[0].Object.Key != k {
		return nil, fmt.Errorf("stored %s does not read back as itself: run tcpshift down and apply again", k)
	}
	return docs[0].Object, nil
}

package istio

import (
	"errors"
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

// DecodeStored reads back an object kept with the namespace's state. Its
// errors, and those of a derivation that finds it wrong, name it by
// appliedPath: Applied reads them back.
func DecodeStored(k Key, text []byte) (*Object, error) {
	docs, err := Decode(appliedPath(k), text)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 || docs[0].Object == nil || docs[0].Object.Key != k {
		return nil, fmt.Errorf("stored %s does not read back as itself: run tcpshift down and apply again", k)
	}
	return docs[0].Object, nil
}

// appliedPrefix starts the path of an object read back from the stored
// objects rather than from a file: "applied networking.istio.io/Gateway
// default/x", the group kept (Gateway is two kinds).
const appliedPrefix = "applied "

func appliedPath(k Key) string {
	return appliedPrefix + k.Kind + " " + k.Namespace + "/" + k.Name
}

// AppliedError is a derivation's error in an object applied before, which
// the files at hand do not hold: what they add or delete broke it.
type AppliedError struct {
	Key   Key
	Line  int    // in the object's text, as GetCommand prints it
	Field string // spec.tcp[0]...
	Msg   string
}

// Applied says whether err is about an object applied before (read back
// from the stored objects), and what it says.
func Applied(err error) (*AppliedError, bool) {
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Path, appliedPrefix) {
		return nil, false
	}
	kind, name, ok := strings.Cut(strings.TrimPrefix(ce.Path, appliedPrefix), " ")
	ns, name, ok2 := strings.Cut(name, "/")
	if !ok || !ok2 {
		return nil, false
	}
	k := Key{Kind: kind, Namespace: ns, Name: name}
	return &AppliedError{Key: k, Line: ce.Line, Field: strings.TrimPrefix(ce.Field, k.String()+": "), Msg: ce.Msg}, true
}

// Where says where the error is: the line of the object as `get` prints it.
func (e *AppliedError) Where() string {
	if e.Line == 0 {
		return GetCommand(e.Key)
	}
	return fmt.Sprintf("line %d of %s", e.Line, GetCommand(e.Key))
}

// What is the error itself: field and message, in Istio's words.
func (e *AppliedError) What() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// GetCommand is the command that prints an applied object as stored.
func GetCommand(k Key) string {
	name := k.Kind
	for _, n := range kindNames {
		if n.Kind == k.Kind {
			name = n.Names[0]
			break
		}
	}
	cmd := "tcpshift get " + name + " " + k.Name
	if k.Namespace != DefaultNamespace {
		cmd += " -n " + k.Namespace
	}
	return cmd + " -o yaml"
}

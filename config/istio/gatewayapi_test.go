package istio

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// backends are two Services, declared by ServiceEntries in default and
// in web.
const backends = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo-v1}
spec:
  hosts: [echo-v1]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9001}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo-v2, namespace: web}
spec:
  hosts: [echo-v2]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9002}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: tcpshift
  listeners:
  - {name: one, port: 9300, protocol: TCP}
  - {name: two, port: 9301, protocol: TCP}
  - {name: udp, port: 5300, protocol: UDP}
  - {name: http, port: 8080, protocol: HTTP}
`

// route is a TCPRoute document of default (unless meta says otherwise).
func route(meta, parents, backendRefs string) string {
	return fmt.Sprintf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: %s
spec:
  parentRefs: %s
  rules:
  - backendRefs: %s
`, meta, parents, backendRefs)
}

const toV1 = "[{name: echo-v1, port: 3000}]"

func deriveOpts(t *testing.T, text string, opts Options) (*Result, error) {
	t.Helper()
	objs, err := decodeObjects(text)
	if err != nil {
		return nil, err
	}
	return DeriveWith(objs, opts)
}

func mustDerive(t *testing.T, text string) *Result {
	t.Helper()
	res, err := deriveOpts(t, text, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TCPRoute is read in v1 (GA in Gateway API v1.6) with v1's limits, and
// in v1alpha2 with its own; each limit is refused in the API server's
// words, at its line.
func TestTCPRouteLimits(t *testing.T) {
	many := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+", ", n), ", ") + "]"
	}
	v1alpha2 := func(s string) string {
		return strings.Replace(s, "gateway.networking.k8s.io/v1\nkind: TCPRoute", "gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute", 1)
	}
	twoRules := strings.Replace(route("{name: r}", "[{name: gw, sectionName: one}]", toV1), "  rules:\n", "  rules:\n  - backendRefs: "+toV1+"\n", 1)
	for _, c := range []struct{ name, text, want string }{
		{"v1 two rules", backends + twoRules,
			"x.yaml:34: TCPRoute default/r: spec.rules: Too many: 2: must have at most 1 items"},
		{"v1alpha2 two rules", backends + v1alpha2(twoRules),
			"x.yaml:35: TCPRoute default/r: spec.rules[1]: a TCPRoute with several rules has no way to choose between them: give one rule with every backendRef"},
		{"v1alpha2 seventeen rules", backends + v1alpha2(strings.Replace(twoRules, "  rules:\n", "  rules:\n"+strings.Repeat("  - backendRefs: "+toV1+"\n", 15), 1)),
			"x.yaml:34: TCPRoute default/r: spec.rules: Too many: 17: must have at most 16 items"},
		{"seventeen backendRefs", backends + route("{name: r}", "[{name: gw}]", many(17, "{name: echo-v1, port: 3000}")),
			"x.yaml:34: TCPRoute default/r: spec.rules[0].backendRefs: Too many: 17: must have at most 16 items"},
		{"weight above 1000000", backends + route("{name: r}", "[{name: gw}]", "[{name: echo-v1, port: 3000, weight: 1000001}]"),
			"x.yaml:34: TCPRoute default/r: spec.rules[0].backendRefs[0].weight: Invalid value: 1000001: should be less than or equal to 1000000"},
		{"negative weight", backends + route("{name: r}", "[{name: gw}]", "[{name: echo-v1, port: 3000, weight: -1}]"),
			"x.yaml:34: TCPRoute default/r: spec.rules[0].backendRefs[0].weight: Invalid value: -1: should be greater than or equal to 0"},
		{"service without port", backends + route("{name: r}", "[{name: gw}]", "[{name: echo-v1}]"),
			"x.yaml:34: TCPRoute default/r: spec.rules[0].backendRefs[0]: Invalid value: \"object\": Must have port for Service reference"},
		{"no rules", backends + strings.Replace(route("{name: r}", "[{name: gw}]", toV1), "  rules:\n  - backendRefs: "+toV1+"\n", "  rules: []\n", 1),
			"x.yaml:33: TCPRoute default/r: spec.rules: Required value: must have at least 1 item"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := deriveOpts(t, c.text, Options{})
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
	// The weights' bounds themselves are taken, in either version.
	for _, text := range []string{
		route("{name: r}", "[{name: gw, sectionName: one}]", "[{name: echo-v1, port: 3000, weight: 1000000}, {name: echo-v3, port: 3000, weight: 0}]"),
		v1alpha2(route("{name: r}", "[{name: gw, sectionName: one}]", "[{name: echo-v1, port: 3000, weight: 1000000}, {name: echo-v3, port: 3000, weight: 0}]")),
	} {
		res := mustDerive(t, backends+text)
		if got := describeServices(res.Services); got != "r [::]:9300 auto echo-v1=1000000[127.0.0.1:9001] echo-v3=0[]\n" {
			t.Fatalf("weights 1000000 and 0:\n%s", got)
		}
	}
}

// A parentRef attaches to the listener its sectionName names, to those
// on its port, to the one both name, or with neither to every listener
// of the Gateway that takes TCPRoutes (ParentRefAttachAll and
// ParentRefPortAndSectionName of the conformance suite).
func TestParentRefAttachment(t *testing.T) {
	for _, c := range []struct{ parents, want string }{
		{"[{name: gw, port: 9300}]", "r [::]:9300 auto echo-v1=1[127.0.0.1:9001]\n"},
		{"[{name: gw, sectionName: two}]", "r [::]:9301 auto echo-v1=1[127.0.0.1:9001]\n"},
		{"[{name: gw, sectionName: one, port: 9300}]", "r [::]:9300 auto echo-v1=1[127.0.0.1:9001]\n"},
		{"[{name: gw}]", "r-9300 [::]:9300 auto echo-v1=1[127.0.0.1:9001]\nr-9301 [::]:9301 auto echo-v1=1[127.0.0.1:9001]\n"},
	} {
		res := mustDerive(t, backends+route("{name: r}", c.parents, toV1))
		if got := describeServices(res.Services); got != c.want {
			t.Errorf("parentRefs %s:\n%s\nwant\n%s", c.parents, got, c.want)
		}
		if len(res.Routes) != 1 || len(res.Routes[0].Parents) != 1 || !res.Routes[0].Parents[0].Accepted() {
			t.Errorf("parentRefs %s: status %+v, want one parent, Accepted", c.parents, res.Routes)
		}
	}
}

// A listener that is not TCP does not take a TCPRoute: a route it is the
// only parent of is refused (NotAllowedByListeners), the Gateway counts
// no attached route; a route with another parent that takes it is served
// there and the refusal is a note.
func TestNonTCPListener(t *testing.T) {
	for _, c := range []struct{ section, want string }{
		{"udp", "x.yaml:32: TCPRoute default/r: spec.parentRefs[0]: listener udp of Gateway default/gw takes no TCPRoute: its protocol is UDP (NotAllowedByListeners)"},
		{"http", "x.yaml:32: TCPRoute default/r: spec.parentRefs[0]: listener http of Gateway default/gw takes no TCPRoute: its protocol is HTTP (NotAllowedByListeners)"},
		{"three", "x.yaml:32: TCPRoute default/r: spec.parentRefs[0]: Gateway default/gw has no listener named three (NoMatchingParent)"},
	} {
		_, err := deriveOpts(t, backends+route("{name: r}", "[{name: gw, sectionName: "+c.section+"}]", toV1), Options{})
		if err == nil || err.Error() != c.want {
			t.Errorf("sectionName %s: got %v\nwant %s", c.section, err, c.want)
		}
	}

	// Left out where a cluster keeps going: its status says why.
	res, err := deriveOpts(t, backends+route("{name: r}", "[{name: gw, sectionName: udp}]", toV1), Options{KeepGoing: true})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Routes[0].Parents[0]
	if len(res.Rejected) != 1 || p.Accepted() || p.Reason(CondAccepted) != ReasonNotAllowedByListeners || len(res.Listeners) != 0 || len(res.Services) != 0 {
		t.Fatalf("route on a UDP listener: rejected %v, parent %+v, listeners %+v, services %d; want rejected, NotAllowedByListeners, 0 attached, none served",
			res.Rejected, p, res.Listeners, len(res.Services))
	}

	// In either order: the UDP parentRef is refused on its own.
	for i, parents := range []string{"[{name: gw, sectionName: udp}, {name: gw, sectionName: one}]", "[{name: gw, sectionName: one}, {name: gw, sectionName: udp}]"} {
		res = mustDerive(t, backends+route("{name: r}", parents, toV1))
		if got := describeServices(res.Services); got != "r [::]:9300 auto echo-v1=1[127.0.0.1:9001]\n" {
			t.Fatalf("one TCP parent of two:\n%s", got)
		}
		want := []string{fmt.Sprintf("x.yaml:32: TCPRoute default/r: spec.parentRefs[%d]: listener udp of Gateway default/gw takes no TCPRoute: its protocol is UDP: not attached there (NotAllowedByListeners)", i)}
		if !slices.Equal(res.Notes, want) {
			t.Fatalf("notes %q\nwant %q", res.Notes, want)
		}
		udp := res.Routes[0].Parents[i]
		if udp.Accepted() || udp.Reason(CondAccepted) != ReasonNotAllowedByListeners || !res.Routes[0].Parents[1-i].Accepted() {
			t.Fatalf("parents %+v, want the udp one NotAllowedByListeners, the other Accepted", res.Routes[0].Parents)
		}
	}
}

// Several routes on one listener are all accepted and attached; the
// oldest (creationTimestamp, then namespace and name) is served, and the
// others are told so (MultipleRoutesAttachment).
func TestRoutesOnOneListener(t *testing.T) {
	older := route("{name: b-older, creationTimestamp: \"2026-06-01T10:00:00Z\"}", "[{name: gw, sectionName: one}]", toV1)
	newer := route("{name: a-newer, creationTimestamp: \"2026-06-01T10:00:01Z\"}", "[{name: gw, sectionName: one}]",
		"[{name: echo-v2, namespace: web, port: 3000}]")
	for _, text := range []string{backends + older + newer, backends + newer + older} {
		res := mustDerive(t, text)
		if got := describeServices(res.Services); got != "b-older [::]:9300 auto echo-v1=1[127.0.0.1:9001]\n" {
			t.Fatalf("two routes on listener one:\n%s\nwant only b-older's", got)
		}
		wantNotes := []string{
			"x.yaml:46: TCPRoute default/a-newer: spec.rules[0].backendRefs[0]: Service web/echo-v2 is in another namespace and no ReferenceGrant in web lets TCPRoutes of default refer to it (RefNotPermitted): its share of the connections (1 of 1) is refused",
			"x.yaml:41: TCPRoute default/a-newer: accepted by listener one of Gateway default/gw, which serves TCPRoute default/b-older, the older route: this route gets none of its connections until that one is gone",
		}
		for i := range wantNotes {
			wantNotes[i] = strings.Replace(wantNotes[i], "x.yaml:46", fmt.Sprintf("x.yaml:%d", lineOf(text, "backendRefs: [{name: echo-v2")), 1)
			wantNotes[i] = strings.Replace(wantNotes[i], "x.yaml:41", fmt.Sprintf("x.yaml:%d", lineOf(text, "{name: a-newer")-2), 1)
		}
		if !slices.Equal(res.Notes, wantNotes) {
			t.Fatalf("notes\n%q\nwant\n%q", res.Notes, wantNotes)
		}
		if len(res.Listeners) != 1 || res.Listeners[0].AttachedRoutes != 2 || res.Listeners[0].Serves.Name != "b-older" {
			t.Fatalf("listeners %+v, want one with 2 attached routes serving b-older", res.Listeners)
		}
		for _, r := range res.Routes {
			if !r.Parents[0].Accepted() {
				t.Fatalf("route %s not accepted: %+v", r.Route, r.Parents)
			}
		}
	}

	// The same time: namespace and name decide, as on Kubernetes.
	same := strings.Replace(newer, "10:00:01", "10:00:00", 1)
	res := mustDerive(t, backends+older+same)
	if got := describeServices(res.Services); !strings.HasPrefix(got, "a-newer ") {
		t.Fatalf("created together: %s, want a-newer (first by name)", got)
	}
}

// lineOf is the 1-based line of the first line of text containing s.
func lineOf(text, s string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}

// A backendRef to another namespace needs a ReferenceGrant there (from
// TCPRoutes of the route's namespace, to its Service or every Service):
// without one it is RefNotPermitted and its share is refused; the grant
// lets it resolve, and its removal revokes it.
func TestReferenceGrant(t *testing.T) {
	r := route("{name: r}", "[{name: gw, sectionName: one}]", "[{name: echo-v1, port: 3000, weight: 70}, {name: echo-v2, namespace: web, port: 3000, weight: 30}]")
	grant := func(to string) string {
		return `---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: default}]
  to: [` + to + `]
`
	}
	for _, c := range []struct{ name, grant, want, reason string }{
		{"no grant", "", "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] echo-v2=30[]\n", ReasonRefNotPermitted},
		{"grant of the Service", grant(`{group: "", kind: Service, name: echo-v2}`), "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] echo-v2=30[127.0.0.1:9002]\n", ReasonResolvedRefs},
		{"grant of every Service", grant(`{group: "", kind: Service}`), "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] echo-v2=30[127.0.0.1:9002]\n", ReasonResolvedRefs},
		{"grant of another Service", grant(`{group: "", kind: Service, name: echo-v3}`), "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] echo-v2=30[]\n", ReasonRefNotPermitted},
		{"grant from another namespace", strings.Replace(grant(`{group: "", kind: Service}`), "namespace: default}]", "namespace: infra}]", 1), "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] echo-v2=30[]\n", ReasonRefNotPermitted},
	} {
		res := mustDerive(t, backends+r+c.grant)
		if got := describeServices(res.Services); got != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", c.name, got, c.want)
		}
		if got := res.Routes[0].Parents[0].Reason(CondResolvedRefs); got != c.reason {
			t.Errorf("%s: ResolvedRefs %s, want %s", c.name, got, c.reason)
		}
		if c.reason == ReasonResolvedRefs && !strings.Contains(res.OriginText("r"), "ReferenceGrant web/g") {
			t.Errorf("%s: origin %s lacks the grant", c.name, res.OriginText("r"))
		}
	}
}

// A backendRef that does not resolve keeps its weight with no endpoint,
// so its share of the connections is refused rather than given to the
// others (GEP-2644): BackendNotFound, InvalidKind, or a port the Service
// lacks; a note says so.
func TestInvalidBackendKeepsShare(t *testing.T) {
	for _, c := range []struct{ name, ref, reason, note string }{
		{"nonexistent", "{name: nope, port: 3000, weight: 30}", ReasonBackendNotFound,
			"Service default/nope is not declared (a ServiceEntry with hosts: [nope] in namespace default, or a Kubernetes Service) (BackendNotFound)"},
		{"other kind", "{name: nope, kind: ConfigMap, port: 3000, weight: 30}", ReasonInvalidKind,
			"ConfigMap default/nope (group \"\") is no backend tcpshift knows: backends are Services (InvalidKind)"},
	} {
		text := backends + route("{name: r}", "[{name: gw, sectionName: one}]", "[{name: echo-v1, port: 3000, weight: 70}, "+c.ref+"]")
		res := mustDerive(t, text)
		if got := describeServices(res.Services); got != "r [::]:9300 auto echo-v1=70[127.0.0.1:9001] nope=30[]\n" {
			t.Errorf("%s:\n%s", c.name, got)
		}
		want := fmt.Sprintf("x.yaml:%d: TCPRoute default/r: spec.rules[0].backendRefs[1]: %s: its share of the connections (30 of 100) is refused", lineOf(text, "weight: 70"), c.note)
		if !slices.Equal(res.Notes, []string{want}) {
			t.Errorf("%s: notes %q\nwant %q", c.name, res.Notes, want)
		}
		if got := res.Routes[0].Parents[0]; !got.Accepted() || got.Reason(CondResolvedRefs) != c.reason {
			t.Errorf("%s: status %+v, want Accepted and ResolvedRefs %s", c.name, got, c.reason)
		}
	}
}

// A listener's allowedRoutes decide which routes it takes: by kind, and
// by namespace (Same unless told, All, or a Selector of namespace labels,
// which a cluster knows and one host does not).
func TestAllowedRoutes(t *testing.T) {
	gw := func(allowed string) string {
		return strings.Replace(backends, "  - {name: one, port: 9300, protocol: TCP}", "  - {name: one, port: 9300, protocol: TCP, allowedRoutes: "+allowed+"}", 1)
	}
	other := route("{name: r, namespace: web}", "[{name: gw, namespace: default, sectionName: one}]", "[{name: echo-v2, port: 3000}]")
	for _, c := range []struct {
		name, allowed, routeText string
		opts                     Options
		want                     string // "": served
	}{
		{"kinds without TCPRoute", "{kinds: [{kind: UDPRoute}]}", route("{name: r}", "[{name: gw, sectionName: one}]", toV1), Options{},
			"listener one of Gateway default/gw allows no TCPRoute (allowedRoutes.kinds: gateway.networking.k8s.io/UDPRoute)"},
		{"kinds with TCPRoute", "{kinds: [{kind: TCPRoute}]}", route("{name: r}", "[{name: gw, sectionName: one}]", toV1), Options{}, ""},
		{"Same, another namespace", "{}", other, Options{},
			"listener one of Gateway default/gw takes routes of namespace default only (allowedRoutes.namespaces.from: Same)"},
		{"All", "{namespaces: {from: All}}", other, Options{}, ""},
		{"Selector on one host", "{namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}", other, Options{},
			"listener one of Gateway default/gw takes routes of namespaces by their labels (allowedRoutes.namespaces.from: Selector), and namespaces have no labels on one host: use Same or All"},
		{"Selector matching", "{namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}", other, Options{Namespaces: map[string]Labels{"web": {"team": "web"}}}, ""},
		{"Selector not matching", "{namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}", other, Options{Namespaces: map[string]Labels{"web": {"team": "db"}}},
			"listener one of Gateway default/gw takes routes of namespaces labelled {team: web} only, and namespace web is not"},
	} {
		text := gw(c.allowed) + c.routeText
		res, err := deriveOpts(t, text, c.opts)
		if c.want == "" {
			if err != nil || len(res.Services) != 1 || res.Services[0].Listen.Port() != 9300 {
				t.Errorf("%s: %v, want served on 9300", c.name, err)
			}
			continue
		}
		want := fmt.Sprintf("x.yaml:%d: TCPRoute %s/r: spec.parentRefs[0]: %s (NotAllowedByListeners)", lineOf(text, "parentRefs:"), map[bool]string{true: "web", false: "default"}[c.routeText == other], c.want)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", c.name, err, want)
		}
	}
}

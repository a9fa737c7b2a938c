package main

import (
	"maps"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	got, err := parseLabels("istio=ingressgateway, app.kubernetes.io/name=tcpshift")
	want := map[string]string{"istio": "ingressgateway", "app.kubernetes.io/name": "tcpshift"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("parseLabels: %v, %v; want %v", got, err, want)
	}
	if s := formatLabels(want); s != "app.kubernetes.io/name=tcpshift,istio=ingressgateway" {
		t.Errorf("formatLabels: %q", s)
	}
	for in, msg := range map[string]string{
		"":              "empty",
		"istio":         `"istio": want key=value`,
		"a=b,a=c":       `key "a" given twice`,
		"bad key=x":     `key "bad key"`,
		"istio=not ok!": `value "not ok!" of istio`,
	} {
		if _, err := parseLabels(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseLabels(%q): %v, want an error with %q", in, err, msg)
		}
	}
}

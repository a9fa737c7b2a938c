package kube

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// portMaps shares one map of member ports among the EndpointSlices whose
// ports are the same: a cluster's slices mostly name the same few ports,
// and a map per slice was a tenth of the Deriver's memory at ten thousand
// Services. The maps it hands out are never written to.
type portMaps map[string]map[string]uint16

// intern returns the map equal to m handed out before, or keeps m.
func (p portMaps) intern(m map[string]uint16) map[string]uint16 {
	if p == nil {
		return m
	}
	var key strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		key.WriteString(strconv.Quote(name))
		key.WriteString(strconv.Itoa(int(m[name])))
	}
	if have, ok := p[key.String()]; ok {
		return have
	}
	p[key.String()] = m
	return m
}

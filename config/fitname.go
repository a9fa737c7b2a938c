package config

import (
	"fmt"
	"hash/fnv"
)

// FitName makes a derived service name fit MaxNameLen (the maps keep no
// more): a longer one keeps its first bytes and ends with a hash of the
// whole, so two long names stay two names and the same one stays the same.
func FitName(name string) string {
	if len(name) <= MaxNameLen {
		return name
	}
	f := fnv.New32a()
	f.Write([]byte(name))
	suffix := fmt.Sprintf("-%08x", f.Sum32())
	return name[:MaxNameLen-len(suffix)] + suffix
}

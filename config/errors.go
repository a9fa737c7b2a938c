package config

import (
	"strconv"
	"strings"
)

// Error is a configuration error located in the file.
type Error struct {
	Path  string // file name
	Line  int    // 1-based line, 0 when unknown
	Field string // field path such as services[0].route[1].subset; empty for YAML syntax errors
	Msg   string
}

// Error formats the error as a single line "FILE:LINE: FIELD: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Package examples holds the example inputs shipped with tcpshift: Istio's
// TCP traffic-shifting task in Istio's own shapes (istio/) and with the
// Gateway API (gateway-api/). The demo embeds them.
package examples

import "embed"

// FS holds istio/*.yaml and gateway-api/*.yaml.
//
//go:embed istio/*.yaml gateway-api/*.yaml
var FS embed.FS

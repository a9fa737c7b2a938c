package status

import (
	"maps"
	"time"
)

// Istio's words for its objects' status (IstioStatus): a Reconciled
// condition, analysis messages, and the generation they describe.
const (
	condReconciled   = "Reconciled"
	reasonRejected   = "Rejected"
	messageNotApply  = "NotApplied"
	messageApplied   = "applied by tcpshift on every node"
	validationErrors = "ERROR"
)

// istioStatus is a VirtualService's or DestinationRule's status: taken
// (Reconciled) or left out (not, with an ERROR message and why).
func istioStatus(o *Object, rejected error, now time.Time) map[string]any {
	st := maps.Clone(o.Status)
	if st == nil {
		st = map[string]any{}
	}
	prev := list(o.Status, "conditions")
	st["observedGeneration"] = o.Generation
	if rejected == nil {
		st["conditions"] = setConditions(prev, istioCondition(true, "", messageApplied, prev, now))
		delete(st, "validationMessages")
		return st
	}
	st["conditions"] = setConditions(prev, istioCondition(false, reasonRejected, rejected.Error(), prev, now))
	st["validationMessages"] = []any{map[string]any{"level": validationErrors, "type": map[string]any{"name": messageNotApply}}}
	return st
}

// istioCondition is an IstioCondition: like the Gateway API's, without
// observedGeneration (the status has one).
func istioCondition(ok bool, reason, msg string, prev []any, now time.Time) map[string]any {
	c := condition(condReconciled, ok, reason, msg, 0, prev, now)
	delete(c, "observedGeneration")
	if reason == "" {
		delete(c, "reason")
	}
	return c
}

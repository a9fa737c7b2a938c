package istio

import "testing"

// The hint for a Kubernetes Service names the labels to copy: its
// selector's, as the one for a Deployment names its pods'.
func TestServiceHintNamesSelector(t *testing.T) {
	text := "apiVersion: v1\nkind: Service\nmetadata: {name: tcp-echo}\nspec:\n  selector:\n    app: tcp-echo\n  ports: [{port: 9000}]\n"
	want := "x.yaml:1: kind: Service tcp-echo: tcpshift does not read Kubernetes Services: declare host tcp-echo with a ServiceEntry (hosts, ports, workloadSelector: {labels: {app: tcp-echo}}) and its workloads with WorkloadEntries with labels {app: tcp-echo}"
	if _, err := Decode("x.yaml", []byte(text)); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

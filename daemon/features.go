package daemon

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpshift/tcpshift/features"
)

// LogKernelFeatures probes the kernel facilities tcpshift uses and logs each
// (what `tcpshift doctor` shows): at start, so an operator sees which path
// each optional feature takes on this host. tcpshift run and agent call it.
func LogKernelFeatures(log *slog.Logger) features.Report {
	report := features.Probe()
	for _, r := range report {
		if r.Available() {
			log.Info("kernel feature", "feature", string(r.Name), "available", true)
		} else {
			log.Warn("kernel feature", "feature", string(r.Name), "available", false, "core", r.Core, "without", r.Without, "err", r.Err)
		}
	}
	return report
}

// featureCollector exports the probe's result as tcpshift_kernel_feature.
type featureCollector struct{ report features.Report }

var descFeature = prometheus.NewDesc("tcpshift_kernel_feature",
	"1 if the kernel offers the facility to tcpshift (tcpshift doctor), 0 if not.", []string{"feature"}, nil)

func (c featureCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descFeature }

func (c featureCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.report {
		v := 0.0
		if r.Available() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descFeature, prometheus.GaugeValue, v, string(r.Name))
	}
}

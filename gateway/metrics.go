package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics, on their own registry (so
// several gateways in one process, as in tests and the demo, keep theirs
// apart). Labels stay bounded: verdict, service and rule names come from
// the policy, never identities or addresses.
//
// The hot path pays for one counter increment per decision and one
// histogram observation; byte totals are summed at scrape time from the
// flows' own counters instead of being added per read.
type metrics struct {
	reg      *prometheus.Registry
	flows    *prometheus.CounterVec // verdict, service, rule
	decision prometheus.Histogram   // seconds per decision
	reloads  *prometheus.CounterVec // result
	endedIn  atomic.Int64           // bytes of flows that have ended
	endedOut atomic.Int64
	srv      *http.Server
}

func (g *Gateway) newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_flows_total",
			Help: "Flow decisions by verdict (allow, deny, audit), service and deciding rule.",
		}, []string{"verdict", "service", "rule"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wardgate_decision_seconds",
			Help:    "Time to identify, match and decide one new flow.",
			Buckets: prometheus.ExponentialBuckets(100e-9, 4, 10), // 100ns .. 26ms
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wardgate_config_reloads_total",
			Help: "Reloads by result (ok, error).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.flows, m.decision, m.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_active_flows", Help: "Flows open now.",
		}, func() float64 { return float64(g.flows.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_peers", Help: "WireGuard peers configured (identities homed here and other sites).",
		}, func() float64 { return float64(len(g.overlay.Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_enforcing",
			Help: "1 when policy is enforced; 0 in audit mode, when would-be denials are let through.",
		}, func() float64 {
			if g.auditing.Load() {
				return 0
			}
			return 1
		}),
		&bytesCollector{g: g, desc: prometheus.NewDesc("wardgate_bytes_total",
			"Bytes carried by flows: in is from clients towards services, out is back.", []string{"direction"}, nil)},
		&dnsCollector{g: g, desc: prometheus.NewDesc("wardgate_dns_queries_total",
			"DNS queries answered, by response code.", []string{"rcode"}, nil)},
	)
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// observe counts one decision.
func (m *metrics) observe(v verdict, event string, took time.Duration) {
	svc := ""
	if v.svc != nil {
		svc = v.svc.Name
	}
	verdict := "allow"
	switch event {
	case EventFlowDeny:
		verdict = "deny"
	case EventFlowAudit:
		verdict = "audit"
	}
	m.flows.WithLabelValues(verdict, svc, v.d.Rule).Inc()
	if took > 0 {
		m.decision.Observe(took.Seconds())
	}
}

// flowEnded moves a finished flow's bytes into the running totals.
func (m *metrics) flowEnded(f *flow) {
	m.endedIn.Add(f.bytesIn.Load())
	m.endedOut.Add(f.bytesOut.Load())
}

// bytesCollector sums ended flows and live ones at scrape time.
type bytesCollector struct {
	g    *Gateway
	desc *prometheus.Desc
}

func (c *bytesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *bytesCollector) Collect(ch chan<- prometheus.Metric) {
	in, out := c.g.metrics.endedIn.Load(), c.g.metrics.endedOut.Load()
	for _, f := range c.g.flows.snapshot() {
		in += f.bytesIn.Load()
		out += f.bytesOut.Load()
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(out), "out")
}

// dnsCollector reads dnsfilter's counters at scrape time.
type dnsCollector struct {
	g    *Gateway
	desc *prometheus.Desc
}

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.g.dns == nil {
		return
	}
	for rcode, n := range c.g.dns.Stats().Rcodes {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), rcode)
	}
}

// startMetrics serves /metrics on [admin] metrics, when set.
func (g *Gateway) startMetrics() error {
	addr := g.cfg.Admin.Metrics
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	g.metrics.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := g.metrics.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

func (g *Gateway) stopMetrics() {
	if g.metrics != nil && g.metrics.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		g.metrics.srv.Shutdown(ctx)
	}
}

// MetricsHandler serves the gateway's metrics (for tests and embedding).
func (g *Gateway) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{})
}

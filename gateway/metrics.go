package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_active_flows", Help: "Flows open now.",
		}, func() float64 { return float64(g.flows.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_enforcing",
			Help: "1 when policy is enforced; 0 in audit mode, when would-be denials are let through.",
		}, func() float64 { return boolValue(!g.auditing.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wardgate_quarantined", Help: "Identities in quarantine now.",
		}, func() float64 { return float64(len(g.quar.sorted(true))) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wardgate_audit_write_errors_total",
			Help: "Audit log lines that could not be written (each one an event lost).",
		}, func() float64 { return float64(g.auditWriteErrors()) }),
		g.peersCollector(), g.bytesCollector(), g.dnsCollector(), g.refusedCollector(), g.siteLinkCollector(), g.dropsCollector(),
		g.sourceCollector(),
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
	in, out := f.bytes()
	m.endedIn.Add(in)
	m.endedOut.Add(out)
}

// scrapeCollector reads, at scrape time, values the gateway keeps anyway,
// so that the hot path pays nothing for them.
type scrapeCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// sessionLifetime is how long a WireGuard session lasts without a new
// handshake (REJECT_AFTER_TIME); a peer whose last handshake is older has
// no session.
const sessionLifetime = 180 * time.Second

func (g *Gateway) peersCollector() prometheus.Collector {
	peers := prometheus.NewDesc("wardgate_peers",
		"WireGuard peers configured (identities homed here and other sites).", nil, nil)
	connected := prometheus.NewDesc("wardgate_peers_connected",
		"Peers with a WireGuard session: a handshake in the last 3 minutes.", nil, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{peers, connected}, collect: func(ch chan<- prometheus.Metric) {
		ps := g.overlay.Peers()
		n := 0
		for _, p := range ps {
			if !p.LastHandshake.IsZero() && time.Since(p.LastHandshake) < sessionLifetime {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(peers, prometheus.GaugeValue, float64(len(ps)))
		ch <- prometheus.MustNewConstMetric(connected, prometheus.GaugeValue, float64(n))
	}}
}

// bytesCollector sums ended flows and live ones.
func (g *Gateway) bytesCollector() prometheus.Collector {
	desc := prometheus.NewDesc("wardgate_bytes_total",
		"Bytes carried by flows: in is from clients towards services, out is back.", []string{"direction"}, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		in, out := g.metrics.endedIn.Load(), g.metrics.endedOut.Load()
		for _, f := range g.flows.snapshot() {
			fi, fo := f.bytes()
			in += fi
			out += fo
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(in), "in")
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(out), "out")
	}}
}

// commonRcodes are exported from the start, at 0, so that rate() and
// alerts see their first increase.
var commonRcodes = []string{"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"}

// dnsCollector reads dnsfilter's counters.
func (g *Gateway) dnsCollector() prometheus.Collector {
	desc := prometheus.NewDesc("wardgate_dns_queries_total",
		"DNS queries answered, by response code.", []string{"rcode"}, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		if g.dns == nil {
			return
		}
		rcodes := g.dns.Stats().Rcodes
		for _, rc := range commonRcodes {
			if _, ok := rcodes[rc]; !ok {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, 0, rc)
			}
		}
		for rcode, n := range rcodes {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), rcode)
		}
	}}
}

// refusedCollector counts flows the per-identity caps refused.
func (g *Gateway) refusedCollector() prometheus.Collector {
	desc := prometheus.NewDesc("wardgate_flows_refused_total",
		"Flows the policy allowed but a [limits] cap refused, by cap (flow-limit, pending-limit, gateway-flow-limit, gateway-udp-limit).", []string{"reason"}, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		refused := g.limits.refusals()
		for _, r := range limitReasons {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(refused[r]), string(r))
		}
	}}
}

// dropsCollector counts the batches of WireGuard packets the gateway
// dropped because its heap was over [limits] memory_mib: the sign of a
// flood (or of a budget too small for the load).
func (g *Gateway) dropsCollector() prometheus.Collector {
	desc := prometheus.NewDesc("wardgate_heap_budget_drops_total",
		"Batches of WireGuard packets dropped because the heap was over [limits] memory_mib: received data packets (handshakes still pass) and packets to send.", nil, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(g.overlay.HeapBudgetDrops()))
	}}
}

// siteLinkCollector reports each link to another site as status shows it.
func (g *Gateway) siteLinkCollector() prometheus.Collector {
	up := prometheus.NewDesc("wardgate_site_link_up",
		"1 when the last probe of the link to another site's gateway succeeded.", []string{"site"}, nil)
	match := prometheus.NewDesc("wardgate_site_policy_match",
		"1 when the other site's gateway last reported the policy hash this gateway runs.", []string{"site"}, nil)
	return &scrapeCollector{descs: []*prometheus.Desc{up, match}, collect: func(ch chan<- prometheus.Metric) {
		for _, l := range g.linkStatus(g.state.Load()) {
			ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, boolValue(l.Healthy), l.Site)
			ch <- prometheus.MustNewConstMetric(match, prometheus.GaugeValue, boolValue(l.SameHash), l.Site)
		}
	}}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
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

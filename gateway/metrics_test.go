package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/testwait"
	"github.com/wardgate/wardgate/overlay/memnet"
)

// monitorPolicy has a second site, york, whose gateway never starts: its
// link is down and its policy hash unknown.
const monitorPolicy = `
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "test.internal"

[[site]]
name = "leeds"
key = "%[1]s"
address = "100.80.0.1"

[[site]]
name = "york"
key = "%[2]s"
address = "100.80.0.2"
endpoint = "127.0.0.1:51899"

[[identity]]
name = "alice"
key = "%[3]s"
address = "100.80.1.10"
site = "leeds"
groups = ["clinical"]

[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.10"
endpoints = ["%[4]s"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]
`

// monitored is a gateway for the metrics and audit tests: site leeds,
// alice as its client, its files in dir.
type monitored struct {
	gw    *Gateway
	alice testKey
	tg    *testGateway // to connect clients
	be    testBackends
	dir   string
}

// startMonitored starts leeds with extra appended to gateway.toml. With a
// nil audit the gateway opens [log] audit itself.
func startMonitored(t *testing.T, extra string, audit *slog.Logger) *monitored {
	t.Helper()
	m := &monitored{alice: newTestKey(t), be: startTestBackends(t), dir: t.TempDir()}
	key, york := newTestKey(t), newTestKey(t)
	pol := fmt.Sprintf(monitorPolicy, key.pubB64(), york.pubB64(), m.alice.pubB64(), m.be.echo)
	for name, content := range map[string]string{
		"gw.key":      key.privB64() + "\n",
		"policy.toml": pol,
		"gateway.toml": "site = \"leeds\"\npolicy = \"policy.toml\"\nprivate_key_file = \"gw.key\"\n" +
			"listen = \"127.0.0.1:51820\"\n" + extra,
	} {
		if err := os.WriteFile(filepath.Join(m.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := LoadConfig(filepath.Join(m.dir, "gateway.toml"))
	if err != nil {
		t.Fatal(err)
	}
	sw := memnet.NewSwitch()
	m.gw, err = Start(cfg, Options{Bind: sw.Bind(netip.MustParseAddr("127.0.0.1")), Audit: audit, Logger: slogToTest(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.gw.Close() })
	m.tg = &testGateway{gw: m.gw, key: key, sw: sw, port: m.gw.Port(), dir: m.dir}
	return m
}

func (m *monitored) scrape(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// sampleValue is the value of the sample named exactly series
// (name{labels} as the text format prints it), or -1 when absent.
func sampleValue(body, series string) float64 {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// exportedNames are the sample names in a scrape (histograms give
// _bucket, _sum and _count).
func exportedNames(body string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.Lines(body) {
		if line == "" || line[0] == '#' {
			continue
		}
		names[line[:strings.IndexAny(line, "{ ")]] = true
	}
	return names
}

// TestMetricsScrape: the standard Go and process collectors, site links,
// refusals by a cap and audit write errors appear on /metrics.
func TestMetricsScrape(t *testing.T) {
	m := startMonitored(t, "[limits]\nflows_per_identity = 1\ndrain = \"1s\"\n", NewAuditLogger(io.Discard))
	alice := m.tg.client(t, m.alice, "100.80.1.10")
	held, err := dialVIP(alice, "100.81.0.10", m.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	testwait.Until(t, 5*time.Second, "the first flow to be registered", func() bool { return len(m.gw.Flows()) == 1 })
	if c, err := dialVIP(alice, "100.81.0.10", m.be.echo.Port()); err == nil {
		// The refusal may come as a reset after the handshake.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a second flow got through flows_per_identity = 1")
		}
		c.Close()
	}
	body := m.scrape(t)
	for _, tc := range []struct {
		series string
		want   func(float64) bool
	}{
		{"go_goroutines", func(v float64) bool { return v > 0 }},
		{"process_resident_memory_bytes", func(v float64) bool { return v > 1<<20 }},
		{"process_open_fds", func(v float64) bool { return v > 0 }},
		{`wardgate_site_link_up{site="york"}`, func(v float64) bool { return v == 0 }},
		{`wardgate_site_policy_match{site="york"}`, func(v float64) bool { return v == 0 }},
		{`wardgate_flows_refused_total{reason="flow-limit"}`, func(v float64) bool { return v == 1 }},
		{`wardgate_flows_refused_total{reason="pending-limit"}`, func(v float64) bool { return v == 0 }},
		{`wardgate_audit_write_errors_total`, func(v float64) bool { return v == 0 }},
		{`wardgate_dns_queries_total{rcode="SERVFAIL"}`, func(v float64) bool { return v == 0 }},
		{`wardgate_peers`, func(v float64) bool { return v == 2 }},
		{`wardgate_peers_connected`, func(v float64) bool { return v == 1 }},
		{`wardgate_active_flows`, func(v float64) bool { return v == 1 }},
	} {
		if v := sampleValue(body, tc.series); v < 0 || !tc.want(v) {
			t.Errorf("%s = %v", tc.series, v)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// requirePromtool finds promtool (Debian package prometheus); a missing
// one skips, except under CI=true.
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (scripts/install-deps.sh installs it)")
		}
		t.Skip("promtool not found (scripts/install-deps.sh installs it)")
	}
	return p
}

const monitoringDir = "../configs/monitoring"

// TestMonitoringRules checks the alerting rules and runs their unit tests.
func TestMonitoringRules(t *testing.T) {
	promtool := requirePromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "wardgate-alerts.yml"},
		{"test", "rules", "wardgate-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = monitoringDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is what the test reads of the Grafana dashboard.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// monitoringExprs are the dashboard's and the alerts' PromQL expressions,
// each with where it comes from.
func monitoringExprs(t *testing.T) (exprs map[string]string, variables []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "wardgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("wardgate-dashboard.json: %v", err)
	}
	exprs = map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("dashboard panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			variables = append(variables, v.Definition)
		}
	}
	rules, err := os.ReadFile(filepath.Join(monitoringDir, "wardgate-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(rules), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			e = strings.TrimSpace(e)
			if e == "|" || e == ">" || strings.HasPrefix(e, "|") || strings.HasPrefix(e, ">") {
				t.Fatalf("wardgate-alerts.yml:%d: keep expr on one line", i+1)
			}
			exprs[fmt.Sprintf("wardgate-alerts.yml:%d", i+1)] = e
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	return exprs, variables
}

var (
	// promqlNoise is what is not a metric name: strings, label matchers,
	// range and subquery windows, label lists of by/without/on/ignoring.
	promqlNoise = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlToken = regexp.MustCompile(`[0-9][\w.]*|[a-zA-Z_:][\w:]*\s*\(?`)
	promqlWords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames lists the metric names a PromQL expression selects: the
// identifiers that are neither functions, keywords nor label names.
func metricNames(expr string) []string {
	var out []string
	for _, tok := range promqlToken.FindAllString(promqlNoise.ReplaceAllString(expr, " "), -1) {
		name := strings.TrimSpace(tok)
		if tok[0] >= '0' && tok[0] <= '9' || strings.HasSuffix(tok, "(") || promqlWords[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (verdict) (rate(wardgate_flows_total{instance=~"$instance"}[$__rate_interval]))`:        "wardgate_flows_total",
		`histogram_quantile(0.99, sum by (le) (rate(wardgate_decision_seconds_bucket{a="}"}[5m])))`:     "wardgate_decision_seconds_bucket",
		`wardgate_site_policy_match == 0 and wardgate_site_link_up == 1`:                                "wardgate_site_policy_match,wardgate_site_link_up",
		`count by (instance) (x == 0) or on (instance) (0 * group by (instance) (y))`:                   "x,y",
		`process_open_fds{job="wardgate"} / process_max_fds{job="wardgate"} > 0.8`:                      "process_open_fds,process_max_fds",
		`sum without (instance, job) (increase(wardgate_audit_write_errors_total[1h] offset 1d)) > 1e3`: "wardgate_audit_write_errors_total",
		`up{job="wardgate"} == bool 0 unless on (instance) group_left (site) wardgate_site_link_up`:     "up,wardgate_site_link_up",
	} {
		if got := strings.Join(metricNames(expr), ","); got != want {
			t.Errorf("metricNames(%s) = %s, want %s", expr, got, want)
		}
	}
}

// TestMonitoringMetricsExported: every metric the dashboard and the alerts
// query is on a running gateway's /metrics (up is Prometheus's own).
func TestMonitoringMetricsExported(t *testing.T) {
	m := startMonitored(t, "", NewAuditLogger(io.Discard))
	alice := m.tg.client(t, m.alice, "100.80.1.10")
	c, err := dialVIP(alice, "100.81.0.10", m.be.echo.Port()) // one decision, for the labelled series
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	testwait.Until(t, 5*time.Second, "a decision to be counted", func() bool {
		return strings.Contains(m.scrape(t), "wardgate_flows_total{")
	})
	exported := exportedNames(m.scrape(t))
	exported["up"] = true
	exprs, variables := monitoringExprs(t)
	for where, expr := range exprs {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %s", where, expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s uses %s, which the gateway does not export", where, n)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*\w+\)$`)
	for _, v := range variables {
		sm := labelValues.FindStringSubmatch(v)
		if sm == nil || !exported[sm[1]] {
			t.Errorf("dashboard variable %q: want label_values(<exported metric>, label)", v)
		}
	}
}

// TestMonitoringDashboardPromQL has promtool parse every dashboard query,
// as recording rules with Grafana's variables filled in.
func TestMonitoringDashboardPromQL(t *testing.T) {
	promtool := requirePromtool(t)
	exprs, _ := monitoringExprs(t)
	fill := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, k := range slices.Sorted(maps.Keys(exprs)) {
		q, _ := json.Marshal(fill.Replace(exprs[k])) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      # %s\n      - record: dashboard:expr_%d\n        expr: %s\n", k, i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s\n%s", err, out, b.String())
	}
}

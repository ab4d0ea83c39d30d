package demo

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRun plays the whole demo and checks that the story happened: each
// verdict from the gateways' audit log, the relayed flows, the quarantined
// worm, the moved service served at York, the revoked flow.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := RunWith(ctx, &out, Options{Timeout: 45 * time.Second, anyPort: true})
	took := time.Since(start)
	t.Logf("demo output (%v):\n%s", took, out.String())
	if err != nil {
		t.Fatal(err)
	}
	// One row per line: STEP WHO WHAT WHERE VERDICT RULE/REASON.
	want := []struct{ what, re string }{
		{"radiologist resolves pacs", `dr-khan-laptop\s+dns pacs\.nhs\.internal\s+leeds\s+answer\s+NOERROR -> 100\.81\.`},
		{"radiologist allowed at leeds", `dr-khan-laptop\s+pacs:\d+/tcp\s+leeds\s+allow\s+radiology-reads-pacs\n`},
		{"radiologist relayed and allowed at york", `dr-khan-laptop\s+pacs:\d+/tcp\s+york\s+allow\s+radiology-reads-pacs, relayed from leeds`},
		{"reception gets NXDOMAIN", `reception-pc\s+dns pacs\.nhs\.internal\s+leeds\s+nxdomain\s+NXDOMAIN`},
		{"reception denied at leeds", `reception-pc\s+pacs:\d+/tcp\s+leeds\s+deny\s+no-rule`},
		{"nothing crossed for reception", `York logged 0 events for reception-pc`},
		{"c2 lookup blocked", `york-ward-pc-7\s+dns beacon\.wncry-c2\.example\s+york\s+blocked\s+blocklist \*\*\.wncry-c2\.example`},
		{"c2 never forwarded", `about beacon\.wncry-c2\.example never`},
		{"smb denied at york", `york-ward-pc-7\s+fileshare:445/tcp\s+york\s+deny\s+no-smb \(deny-rule\)`},
		{"leeds saw nothing of the worm", `logged 0 events for york-ward-pc-7`},
		{"reloads", `operator\s+ehr: site leeds -> york\s+leeds\s+reloaded\s+policy [0-9a-f]+`},
		{"moved ehr served at york", `dr-khan-laptop\s+ehr:\d+/tcp\s+york\s+allow\s+clinical-reads-ehr, relayed from leeds`},
		{"moved ehr answered by york's server", `same name, same address 100\.81\.[0-9.]+; the laptop got HTTP 200 OK "EHR, app server york-ehr-01`},
		{"revoked", `dr-khan-laptop\s+pacs:\d+/tcp\s+leeds\s+revoked\s+now no-rule`},
		{"reconnect denied", `reconnecting is refused`},
		{"edr quarantines the worm", `edr\s+quarantine york-ward-pc-7\s+york\s+quarantined\s+EDR alert 4711`},
		{"worm's live flow revoked", `york-ward-pc-7\s+fileshare:\d+/tcp\s+york\s+revoked\s+now quarantined`},
		{"worm's lookups refused", `york-ward-pc-7\s+dns www\.nhs\.uk\s+york\s+refused\s+REFUSED`},
		{"worm's connections refused", `york-ward-pc-7\s+fileshare:\d+/tcp\s+york\s+deny\s+quarantined`},
		{"worm still gets its patches", `york-ward-pc-7\s+patch-server:\d+/tcp\s+york\s+allow\s+desktops-get-patches`},
		{"the next PC works on", `york-ward-pc-8\s+ehr:\d+/tcp\s+york\s+allow\s+clinical-reads-ehr`},
		{"leeds learns it", `Leeds learnt the quarantine over the site link`},
		{"audit mode on", `operator\s+enforce = "audit"\s+york\s+reloaded`},
		{"a would-be denial let through", `dr-khan-laptop\s+pacs:\d+/tcp\s+leeds\s+audit\s+no-rule, let through`},
		{"the worm in audit mode", `york-ward-pc-7\s+fileshare:445/tcp\s+york\s+audit\s+no-smb \(deny-rule\), let through`},
		{"suggest proposes", `operator\s+suggest leeds-audit\.jsonl\s+leeds\s+proposed\s+allow-pacs \(3 flows\)`},
		{"suggest holds the smb scans", `blocked by deny rule no-smb: 2 flows, listed apart and never proposed`},
		{"the proposed rule", `\+ from = \["dr-khan-laptop"\]`},
		{"allowed by the reviewed rule", `dr-khan-laptop\s+pacs:\d+/tcp\s+leeds\s+allow\s+allow-pacs\n`},
		{"smb denied again", `6j\s+york-ward-pc-7\s+fileshare:445/tcp\s+york\s+deny\s+no-smb \(deny-rule\)`},
		{"summary", `flows:\s+11 allowed, 6 denied, [234] revoked`},
		{"dns summary", `dns:\s+7 answered, 1 hidden \(NXDOMAIN\), 1 blocked, 2 refused \(quarantine\)`},
		{"what you saw", `What you just saw:`},
	}
	for _, w := range want {
		if !regexp.MustCompile(w.re).MatchString(out.String()) {
			t.Errorf("%s: no line matches %q", w.what, w.re)
		}
	}
	// The revoked connection ended within a second of the reload.
	m := regexp.MustCompile(`connection ended (\S+) after the reload`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("no line says when the revoked connection ended")
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d > time.Second {
		t.Errorf("revoked connection ended after %s, want within 1s", m[1])
	}
	if strings.Contains(out.String(), "\t") {
		t.Error("the table has tabs; it is aligned with spaces")
	}
}

// TestSiteWriter splits audit output into events, whole lines only,
// whatever the writes' boundaries.
func TestSiteWriter(t *testing.T) {
	l := newAuditLog(nil)
	w := l.writer("york")
	text := `{"event":"flow.allow","identity":"a","port":443}` + "\n" + `{"event":"dns.block","qname":"x.example"}` + "\n" + `{"event":"flow.de`
	for i := 0; i < len(text); i += 7 {
		w.Write([]byte(text[i:min(i+7, len(text))]))
	}
	evs := l.since(0, func(event) bool { return true })
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2 (the partial line waits)", len(evs))
	}
	if !is("york", "flow.allow", "identity", "a", "port", "443")(evs[0]) || evs[1].str("qname") != "x.example" {
		t.Errorf("events: %+v", evs)
	}
	w.Write([]byte("ny\"}\n"))
	if _, err := l.wait(context.Background(), 2, time.Second, "the completed line", is("york", "flow.deny")); err != nil {
		t.Fatal(err)
	}
}

func TestLineDiff(t *testing.T) {
	a := "[[rule]]\nname = \"a\"\n\n[[rule]]\nname = \"b\"\n\n[[service]]\nsite = \"leeds\"\n"
	b := "[[rule]]\nname = \"b\"\n\n[[service]]\nsite = \"york\"\n"
	got := strings.Join(lineDiff(a, b), "|")
	want := `- [[rule]]|- name = "a"|- site = "leeds"|+ site = "york"`
	if got != want {
		t.Errorf("lineDiff:\n got %s\nwant %s", got, want)
	}
}

package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// semanticsTOML exercises every kind of from, to, ports and when.
var semanticsTOML = fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[site]]
name = "york"
key = %q
address = "100.80.0.2"

[[identity]]
name = "rad"
key = %q
address = "100.80.1.1"
site = "leeds"
groups = ["radiology", "clinical"]

[[identity]]
name = "nurse"
key = %q
address = "100.80.1.2"
site = "york"
groups = ["clinical"]

[[identity]]
name = "mri"
source = "192.168.20.13/32"
site = "york"
groups = ["device"]

[[identity]]
name = "it"
key = %q
address = "100.80.1.3"
site = "leeds"
groups = ["it"]

[[service]]
name = "pacs"
site = "leeds"
endpoints = ["127.0.0.10:443", "127.0.0.10:104", "127.0.0.10:4000-4010/udp"]

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.11:443", "127.0.0.11:445"]

[[service]]
name = "print"
site = "york"
endpoints = ["127.0.0.12:9100"]

[[rule]]
name = "z-rad-pacs"
from = ["group:radiology"]
to = ["pacs"]
ports = ["443/tcp", "8443/tcp"]

[[rule]]
name = "a-rad-pacs-too"
from = ["rad"]
to = ["pacs"]

[[rule]]
name = "device-dicom"
from = ["group:device"]
to = ["pacs"]
ports = ["104/tcp"]

[[rule]]
name = "clinical-ehr"
from = ["group:clinical"]
to = ["ehr"]

[[rule]]
name = "york-print"
from = ["site:york"]
to = ["print"]

[[rule]]
name = "it-all"
from = ["it"]
to = ["*"]

[[rule]]
name = "ping-all"
from = ["*"]
to = ["*"]
ports = ["icmp"]

[[rule]]
name = "no-smb"
action = "deny"
from = ["*"]
to = ["*"]
ports = ["445/tcp"]

[[rule]]
name = "it-no-smb-audit"
action = "deny"
from = ["group:it"]
to = ["ehr"]
ports = ["445/tcp", "443/tcp"]
audit = true

[[rule]]
name = "nurse-pacs-nights"
from = ["nurse"]
to = ["pacs"]
ports = ["443/tcp"]
when = "fri 22:00-06:00 Europe/London"

[[rule]]
name = "nurse-pacs-weekend"
from = ["nurse"]
to = ["pacs"]
ports = ["443/tcp"]
when = "sat,sun 10:00-12:00 Europe/London"
`, testKey(1), testKey(2), testKey(3), testKey(4), testKey(5))

func TestDecideSemantics(t *testing.T) {
	p, err := Parse("sem.toml", []byte(semanticsTOML))
	if err != nil {
		t.Fatal(err)
	}
	mon := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	satEarly := time.Date(2026, 3, 7, 2, 0, 0, 0, time.UTC) // Fri 22:00 window, the morning after
	tests := []struct {
		from, to string
		port     uint16
		proto    Proto
		at       time.Time
		want     Decision
	}{
		// Smallest rule name decides among several allows, whatever the order.
		{"rad", "pacs", 443, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "a-rad-pacs-too"}},
		// A rule without ports grants every port of the service...
		{"rad", "pacs", 4005, ProtoUDP, mon, Decision{Verdict: Allow, Rule: "a-rad-pacs-too"}},
		{"rad", "pacs", 104, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "a-rad-pacs-too"}},
		// ...and none it does not offer: that is no-service.
		{"rad", "pacs", 8443, ProtoTCP, mon, Decision{Reason: ReasonNoService}},
		{"rad", "pacs", 4005, ProtoTCP, mon, Decision{Reason: ReasonNoService}},
		// A group rule narrowed by ports.
		{"mri", "pacs", 104, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "device-dicom"}},
		{"mri", "pacs", 443, ProtoTCP, mon, Decision{Reason: ReasonNoRule}},
		// site:NAME covers everything homed there, LAN identities included.
		{"mri", "print", 9100, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "york-print"}},
		{"nurse", "print", 9100, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "york-print"}},
		{"rad", "print", 9100, ProtoTCP, mon, Decision{Reason: ReasonNoRule}},
		// Deny wins over allow, whatever the order; an enforcing deny is
		// reported before an audit one.
		{"rad", "ehr", 445, ProtoTCP, mon, Decision{Reason: ReasonDenyRule, Rule: "no-smb"}},
		{"rad", "ehr", 443, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "clinical-ehr"}},
		{"it", "ehr", 445, ProtoTCP, mon, Decision{Reason: ReasonDenyRule, Rule: "no-smb"}},
		{"it", "ehr", 443, ProtoTCP, mon, Decision{Reason: ReasonDenyRule, Rule: "it-no-smb-audit", Audit: true}},
		// to "*".
		{"it", "print", 9100, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "it-all"}},
		{"it", "pacs", 4000, ProtoUDP, mon, Decision{Verdict: Allow, Rule: "it-all"}},
		// ICMP: granted by "icmp" ports or by a rule without ports.
		{"nurse", "print", 0, ProtoICMP, mon, Decision{Verdict: Allow, Rule: "ping-all"}},
		{"mri", "ehr", 7, ProtoICMP, mon, Decision{Verdict: Allow, Rule: "ping-all"}},
		{"it", "ehr", 0, ProtoICMP, mon, Decision{Verdict: Allow, Rule: "it-all"}},
		// Time windows: inside, outside, across midnight.
		{"nurse", "pacs", 443, ProtoTCP, mon, Decision{Reason: ReasonOutsideTimeWindow, Rule: "nurse-pacs-nights"}},
		{"nurse", "pacs", 443, ProtoTCP, satEarly, Decision{Verdict: Allow, Rule: "nurse-pacs-nights"}},
		{"nurse", "pacs", 443, ProtoTCP, time.Date(2026, 3, 7, 10, 30, 0, 0, time.UTC), Decision{Verdict: Allow, Rule: "nurse-pacs-weekend"}},
		{"nurse", "pacs", 104, ProtoTCP, satEarly, Decision{Reason: ReasonNoRule}},
	}
	for _, tt := range tests {
		got := p.Decide(p.Identity(tt.from), p.Service(tt.to), tt.port, tt.proto, tt.at)
		if got != tt.want {
			t.Errorf("%s -> %s %d/%s at %s: got %+v, want %+v", tt.from, tt.to, tt.port, tt.proto, tt.at, got, tt.want)
		}
		if got.Allowed() != (tt.want.Verdict == Allow) {
			t.Errorf("Allowed() disagrees with Verdict")
		}
	}
	if d := p.Decide(nil, p.Service("pacs"), 443, ProtoTCP, mon); d != (Decision{Reason: ReasonUnknownIdentity}) {
		t.Errorf("nil identity: %+v", d)
	}
	if d := p.Decide(p.Identity("rad"), nil, 443, ProtoTCP, mon); d != (Decision{Reason: ReasonNoService}) {
		t.Errorf("nil service: %+v", d)
	}
}

// expiryTOML adds time-limited rules to semanticsTOML.
const expiryTOML = `
[[rule]]
name = "locum-dicom"
from = ["nurse"]
to = ["pacs"]
ports = ["104/tcp"]
expires = "2026-03-05T00:00:00Z"
reason = "locum cover, ticket 4711"

[[rule]]
name = "locum-dicom-longer"
from = ["nurse"]
to = ["pacs"]
ports = ["104/tcp"]
expires = 2026-04-01T00:00:00Z

[[rule]]
name = "a-rad-ehr-temp"
from = ["rad"]
to = ["ehr"]
expires = "2026-04-01T00:00:00Z"

[[rule]]
name = "print-freeze"
action = "deny"
from = ["nurse"]
to = ["print"]
expires = "2026-03-05T00:00:00Z"

[[rule]]
name = "nurse-pacs-old"
from = ["nurse"]
to = ["pacs"]
ports = ["443/tcp"]
expires = "2026-03-01T00:00:00Z"

[[rule]]
name = "nurse-ehr-old-weekends"
from = ["nurse"]
to = ["pacs"]
ports = ["4000/udp"]
when = "sat,sun"
expires = "2026-03-01T00:00:00Z"
`

func TestDecideExpiry(t *testing.T) {
	p, err := Parse("exp.toml", []byte(semanticsTOML+expiryTOML))
	if err != nil {
		t.Fatal(err)
	}
	mar5 := time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	apr1 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	mon := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	sat := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		from, to string
		port     uint16
		proto    Proto
		at       time.Time
		want     Decision
	}{
		// The rule granting longest reports, so Expires is when the flow
		// stops being allowed.
		{"nurse", "pacs", 104, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "locum-dicom-longer", Expires: apr1}},
		{"nurse", "pacs", 104, ProtoTCP, mar5, Decision{Verdict: Allow, Rule: "locum-dicom-longer", Expires: apr1}},
		{"nurse", "pacs", 104, ProtoTCP, apr1.Add(-time.Nanosecond), Decision{Verdict: Allow, Rule: "locum-dicom-longer", Expires: apr1}},
		// At expires exactly: nothing granted; the reason says why.
		{"nurse", "pacs", 104, ProtoTCP, apr1, Decision{Reason: ReasonExpired, Rule: "locum-dicom", Expires: mar5}},
		// A rule that never expires beats a smaller name that does.
		{"rad", "ehr", 443, ProtoTCP, mon, Decision{Verdict: Allow, Rule: "clinical-ehr"}},
		// An expiring deny denies until it expires.
		{"nurse", "print", 9100, ProtoTCP, mon, Decision{Reason: ReasonDenyRule, Rule: "print-freeze"}},
		{"nurse", "print", 9100, ProtoTCP, mar5, Decision{Verdict: Allow, Rule: "york-print"}},
		// Expired beats outside-time-window: that rule would have allowed now.
		{"nurse", "pacs", 443, ProtoTCP, mon, Decision{Reason: ReasonExpired, Rule: "nurse-pacs-old", Expires: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}},
		{"nurse", "pacs", 443, ProtoTCP, time.Date(2026, 3, 7, 2, 0, 0, 0, time.UTC), Decision{Verdict: Allow, Rule: "nurse-pacs-nights"}},
		// An expired rule outside its window would not have allowed anyway.
		{"nurse", "pacs", 4000, ProtoUDP, mon, Decision{Reason: ReasonNoRule}},
		{"nurse", "pacs", 4000, ProtoUDP, sat, Decision{Reason: ReasonExpired, Rule: "nurse-ehr-old-weekends", Expires: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		got := p.Decide(p.Identity(tt.from), p.Service(tt.to), tt.port, tt.proto, tt.at)
		if got.Verdict != tt.want.Verdict || got.Rule != tt.want.Rule || got.Reason != tt.want.Reason || !got.Expires.Equal(tt.want.Expires) {
			t.Errorf("%s -> %s %d/%s at %s: got %+v, want %+v", tt.from, tt.to, tt.port, tt.proto, tt.at, got, tt.want)
		}
	}
	if r := p.ruleByName("locum-dicom"); r.Reason != "locum cover, ticket 4711" {
		t.Errorf("rule reason %q", r.Reason)
	}
	_, text := p.Explain(p.Identity("nurse"), p.Service("pacs"), 104, ProtoTCP, mon)
	if want := `allow: rule "locum-dicom-longer" lets nurse reach pacs on 104/tcp, allowed until 2026-04-01T00:00:00Z`; text != want {
		t.Errorf("explain allow:\n%s\nwant\n%s", text, want)
	}
	_, text = p.Explain(p.Identity("nurse"), p.Service("pacs"), 104, ProtoTCP, apr1)
	if want := `deny: rule "locum-dicom" let nurse reach pacs on 104/tcp until 2026-03-05T00:00:00Z; it has expired (reason: locum cover, ticket 4711)`; text != want {
		t.Errorf("explain expired:\n%s\nwant\n%s", text, want)
	}
	// Every rule here expired before the wall clock of this test: check
	// warns about each, and CanReach leaves out expired allows.
	var warned []string
	for _, w := range p.Warnings() {
		if strings.Contains(w.Msg, "expired at") {
			warned = append(warned, w.Error())
		}
	}
	if len(warned) != 6 || !strings.Contains(warned[0], `exp.toml:130:1: rule "locum-dicom": expired at 2026-03-05T00:00:00Z: it grants nothing now; remove it`) {
		t.Errorf("expiry warnings:\n%s", strings.Join(warned, "\n"))
	}
	if p.CanReach(p.Identity("nurse"), p.Service("pacs")) != true { // nurse-pacs-nights
		t.Error("CanReach lost a live rule")
	}
}

// TestDecideAcrossReload: identities and services of an older policy are
// matched by name in a newer one.
func TestDecideAcrossReload(t *testing.T) {
	old, err := Parse("sem.toml", []byte(semanticsTOML))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Parse("sem.toml", []byte(semanticsTOML))
	if err != nil {
		t.Fatal(err)
	}
	mon := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	if d := cur.Decide(old.Identity("rad"), old.Service("pacs"), 443, ProtoTCP, mon); !d.Allowed() {
		t.Errorf("old identity in new policy: %+v", d)
	}
	ghost := &Identity{Name: "ghost"}
	if d := cur.Decide(ghost, cur.Service("pacs"), 443, ProtoTCP, mon); d.Reason != ReasonUnknownIdentity {
		t.Errorf("identity unknown to the policy: %+v", d)
	}
	if d := cur.Decide(cur.Identity("rad"), &Service{Name: "gone"}, 443, ProtoTCP, mon); d.Reason != ReasonNoService {
		t.Errorf("service unknown to the policy: %+v", d)
	}
	if !cur.CanReach(old.Identity("rad"), old.Service("pacs")) {
		t.Error("CanReach across reload")
	}
}

func TestCanReach(t *testing.T) {
	p, err := Parse("sem.toml", []byte(semanticsTOML))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from, to string
		want     bool
	}{
		{"rad", "pacs", true},
		{"rad", "print", true}, // ping-all
		{"mri", "pacs", true},
		{"nurse", "pacs", true}, // at some time
		{"it", "ehr", true},     // ping; 443 and 445 are denied at all times
	}
	for _, tt := range tests {
		if got := p.CanReach(p.Identity(tt.from), p.Service(tt.to)); got != tt.want {
			t.Errorf("CanReach(%s, %s) = %v", tt.from, tt.to, got)
		}
	}
	if p.CanReach(nil, p.Service("pacs")) || p.CanReach(p.Identity("rad"), nil) {
		t.Error("CanReach with nil")
	}
	// Without ping-all, a service whose every port is denied is unreachable.
	q, err := Parse("p.toml", []byte(baseTOML+"[[rule]]\nname = \"a\"\nfrom = [\"alice\"]\nto = [\"pacs\"]\n[[rule]]\nname = \"d\"\naction = \"deny\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nports = [\"443/tcp\", \"icmp\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if q.CanReach(q.Identity("alice"), q.Service("pacs")) {
		t.Error("CanReach ignores a deny that covers every port")
	}
}

// TestDecideConcurrent: a Policy is safe for concurrent use (run with -race).
func TestDecideConcurrent(t *testing.T) {
	p := loadExample(t)
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				for _, id := range p.Identities() {
					for _, svc := range p.Services() {
						p.Decide(id, svc, 8443, ProtoTCP, at)
						p.CanReach(id, svc)
					}
				}
				p.ServiceByName("pacs.nhs.internal")
				p.EgressServices("www.nhs.uk")
			}
			done <- true
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

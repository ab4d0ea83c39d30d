package dnsfilter

import (
	"net"
	"net/netip"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/policy"
)

// auditPolicy is testPolicy with two more services for alice: ehr, hidden
// from her only by a deny rule in roll-out (audit = true), and lab, hidden
// by an enforcing deny rule.
const auditPolicy = testPolicy + `
[[service]]
name = "ehr"
site = "leeds"
vip = "100.81.0.20"
endpoints = ["192.168.5.20:443"]

[[service]]
name = "lab"
site = "leeds"
vip = "100.81.0.30"
endpoints = ["192.168.5.30:443"]

[[rule]]
name = "radiology-clinical"
from = ["group:radiology"]
to = ["ehr", "lab"]

[[rule]]
name = "ehr-rollout"
action = "deny"
from = ["alice"]
to = ["ehr"]
audit = true

[[rule]]
name = "lab-deny"
action = "deny"
from = ["alice"]
to = ["lab"]
`

// TestAuditModeAnswers: in audit mode (the gateway's enforce = "audit")
// every service name enforcement hides is answered and logged as
// dns.audit with the reason; with enforcement on, only names hidden by
// deny rules in roll-out are, and the others stay NXDOMAIN.
func TestAuditModeAnswers(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(auditPolicy))
	if err != nil {
		t.Fatal(err)
	}
	up := nhsUpstream(t, 300)
	var auditing atomic.Bool
	audit := &auditBuf{}
	f, err := New(Config{
		Policy:    func() *policy.Policy { return p },
		Upstreams: []string{up.Addr},
		Audit:     audit.logger(),
		Auditing:  auditing.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	from := func(a string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(a), Port: 5353} }
	alice, bob := from("100.80.1.10"), from("100.80.1.11")
	type event map[string]any
	for _, tc := range []struct {
		mode  string
		who   net.Addr
		name  string
		want  string // the VIP, or "" for NXDOMAIN
		event event  // the dns.audit event, or nil for none
	}{
		{"enforce", alice, "pacs.nhs.internal", "100.81.0.10", nil},
		{"enforce", alice, "ehr.nhs.internal", "100.81.0.20",
			event{"identity": "alice", "site": "leeds", "qname": "ehr.nhs.internal", "qtype": "A", "rcode": "NOERROR", "rule": "ehr-rollout", "reason": "deny-rule"}},
		{"enforce", alice, "lab.nhs.internal", "", nil},
		{"enforce", bob, "pacs.nhs.internal", "", nil},
		{"enforce", bob, "pacs.leeds.example", "", nil},
		{"audit", alice, "pacs.nhs.internal", "100.81.0.10", nil},
		{"audit", alice, "lab.nhs.internal", "100.81.0.30",
			event{"identity": "alice", "qname": "lab.nhs.internal", "rule": "lab-deny", "reason": "deny-rule"}},
		{"audit", bob, "pacs.nhs.internal", "100.81.0.10",
			event{"identity": "bob", "site": "leeds", "qname": "pacs.nhs.internal", "qtype": "A", "reason": "no-rule"}},
		{"audit", bob, "pacs.leeds.example", "100.81.0.10", event{"identity": "bob", "qname": "pacs.leeds.example", "reason": "no-rule"}},
		{"audit", bob, "nothing.nhs.internal", "", nil}, // no service: nowhere to send it
	} {
		auditing.Store(tc.mode == "audit")
		before := len(audit.events(t))
		m := ask(t, f, tc.who, tc.name, dns.TypeA)
		var want []string
		if tc.want != "" {
			want = []string{tc.want}
		}
		if got := answers(m); !reflect.DeepEqual(got, want) || (tc.want == "") != (m.Rcode == dns.RcodeNameError) {
			t.Errorf("%s %v %s: %s %v, want %v", tc.mode, tc.who, tc.name, dns.RcodeToString[m.Rcode], got, want)
		}
		ev := audit.events(t)[before:]
		switch {
		case tc.event == nil && len(ev) != 0:
			t.Errorf("%s %v %s: events %v, want none", tc.mode, tc.who, tc.name, ev)
		case tc.event != nil && (len(ev) != 1 || ev[0]["msg"] != "dns.audit"):
			t.Errorf("%s %v %s: events %v, want one dns.audit", tc.mode, tc.who, tc.name, ev)
		case tc.event != nil:
			for k, v := range tc.event {
				if ev[0][k] != v {
					t.Errorf("%s %v %s: dns.audit %s = %v, want %v", tc.mode, tc.who, tc.name, k, ev[0][k], v)
				}
			}
			if _, ok := ev[0]["rule"]; ok && tc.event["rule"] == nil {
				t.Errorf("%s %v %s: dns.audit names rule %v", tc.mode, tc.who, tc.name, ev[0]["rule"])
			}
		}
	}

	// FQDN egress: carol may not use nhs-web; in audit mode her lookups are
	// learned all the same, so that her flows are decided (and let through
	// as flow.audit) instead of having no service.
	carol := p.Identity("carol")
	cdn := netip.MustParseAddr("93.184.216.34")
	auditing.Store(false)
	ask(t, f, from("100.80.1.12"), "a.nhs.uk", dns.TypeA)
	if s := f.EgressService(carol, cdn, 443, policy.ProtoTCP); s != nil {
		t.Errorf("enforcing: carol learned %s", s.Name)
	}
	auditing.Store(true)
	ask(t, f, from("100.80.1.12"), "b.nhs.uk", dns.TypeA)
	if s := f.EgressService(carol, cdn, 443, policy.ProtoTCP); s == nil || s.Name != "nhs-web" {
		t.Errorf("audit mode: carol's egress service %v, want nhs-web", s)
	}
}

package policy

import (
	"fmt"
	"testing"
)

// reachAuditTOML: alice is in radiology and ward; rules grant and take
// away services in each way DNS has to tell apart.
var reachAuditTOML = fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.1"
site = "leeds"
groups = ["radiology", "ward"]

[[service]]
name = "pacs"
site = "leeds"
endpoints = ["127.0.0.10:443"]

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.11:443"]

[[service]]
name = "lab"
site = "leeds"
endpoints = ["127.0.0.12:443"]

[[service]]
name = "hr"
site = "leeds"
endpoints = ["127.0.0.13:443"]

[[service]]
name = "web"
site = "leeds"
endpoints = ["127.0.0.14:443", "127.0.0.14:80"]

[[rule]]
name = "radiology-all"
from = ["group:radiology"]
to = ["pacs", "ehr", "lab"]

[[rule]]
name = "radiology-web"
from = ["group:radiology"]
to = ["web"]
ports = ["80/tcp", "443/tcp"]

[[rule]]
name = "new-ehr-deny"
action = "deny"
from = ["group:ward"]
to = ["ehr"]
audit = true

[[rule]]
name = "lab-deny"
action = "deny"
from = ["alice"]
to = ["lab"]

[[rule]]
name = "lab-deny-audit"
action = "deny"
from = ["group:ward"]
to = ["lab"]
audit = true

[[rule]]
name = "web-80-deny"
action = "deny"
from = ["alice"]
to = ["web"]
ports = ["80/tcp"]

[[rule]]
name = "web-443-deny-audit"
action = "deny"
from = ["alice"]
to = ["web"]
ports = ["443/tcp"]
audit = true
`, testKey(1), testKey(2))

func TestReachDecision(t *testing.T) {
	p, err := Parse("reach.toml", []byte(reachAuditTOML))
	if err != nil {
		t.Fatal(err)
	}
	alice := p.Identity("alice")
	for _, tc := range []struct {
		svc  string
		want Decision
	}{
		{"pacs", Decision{Verdict: Allow}},
		// Hidden only by a deny in roll-out: DNS may answer in rule-audit mode.
		{"ehr", Decision{Verdict: Deny, Reason: ReasonDenyRule, Rule: "new-ehr-deny", Audit: true}},
		// An enforcing deny hides it whatever the audit one says.
		{"lab", Decision{Verdict: Deny, Reason: ReasonDenyRule, Rule: "lab-deny"}},
		{"hr", Decision{Verdict: Deny, Reason: ReasonNoRule}},
		// 80 is denied for good, 443 only in roll-out: 443 would pass.
		{"web", Decision{Verdict: Deny, Reason: ReasonDenyRule, Rule: "web-443-deny-audit", Audit: true}},
	} {
		svc := p.Service(tc.svc)
		if got := p.ReachDecision(alice, svc); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.svc, got, tc.want)
		}
		if p.CanReach(alice, svc) != (tc.want.Verdict == Allow) {
			t.Errorf("%s: CanReach disagrees", tc.svc)
		}
	}
	if d := p.ReachDecision(nil, p.Service("pacs")); d.Reason != ReasonUnknownIdentity {
		t.Errorf("nil identity: %+v", d)
	}
	if d := p.ReachDecision(alice, nil); d.Reason != ReasonNoService {
		t.Errorf("nil service: %+v", d)
	}
	// Identities and services of an earlier policy are looked up by name.
	q, err := Parse("reach.toml", []byte(reachAuditTOML))
	if err != nil {
		t.Fatal(err)
	}
	if d := q.ReachDecision(alice, p.Service("ehr")); !d.Audit {
		t.Errorf("across reload: %+v", d)
	}
}

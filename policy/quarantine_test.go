package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// quarantineTOML: alice may reach pacs, patch and edr; a deny rule takes
// edr's 8443 from her; [quarantine] keeps patch and edr, and notes, which
// no rule lets her reach.
var quarantineTOML = baseTOML + `[[service]]
name = "patch"
site = "leeds"
endpoints = ["127.0.0.11:80"]

[[service]]
name = "edr"
site = "leeds"
endpoints = ["127.0.0.12:443", "127.0.0.12:8443"]

[[service]]
name = "notes"
site = "leeds"
endpoints = ["127.0.0.13:443"]

[[rule]]
name = "alice-all"
from = ["alice"]
to = ["pacs", "patch", "edr"]

[[rule]]
name = "no-edr-admin"
action = "deny"
from = ["alice"]
to = ["edr"]
ports = ["8443/tcp"]

[quarantine]
allow = ["patch", "edr", "notes"]
`

func TestQuarantinedDecision(t *testing.T) {
	p, err := Parse("policy.toml", []byte(quarantineTOML))
	if err != nil {
		t.Fatal(err)
	}
	alice := p.Identity("alice")
	now := time.Now()
	tests := []struct {
		why         string
		svc         *Service
		port        uint16
		want        Verdict
		wantReason  Reason
		wantRule    string
		plainAllows bool // the same flow outside quarantine
	}{
		{"a service outside the allow list is cut off although a rule allows it", p.Service("pacs"), 443, Deny, ReasonQuarantined, "", true},
		{"a listed service stays reachable under its rule", p.Service("patch"), 80, Allow, ReasonNone, "alice-all", true},
		{"a deny rule still wins on a listed service", p.Service("edr"), 8443, Deny, ReasonDenyRule, "no-edr-admin", false},
		{"the listed service's other port stays", p.Service("edr"), 443, Allow, ReasonNone, "alice-all", true},
		{"quarantine grants nothing: a listed service no rule allows stays denied", p.Service("notes"), 443, Deny, ReasonNoRule, "", false},
		{"a port the service lacks is no-service, not quarantined", p.Service("pacs"), 80, Deny, ReasonNoService, "", false},
		{"no service at all is no-service", nil, 443, Deny, ReasonNoService, "", false},
	}
	for _, tt := range tests {
		plain := p.Decide(alice, tt.svc, tt.port, ProtoTCP, now)
		if plain.Allowed() != tt.plainAllows {
			t.Errorf("%s: outside quarantine allowed=%v, want %v", tt.why, plain.Allowed(), tt.plainAllows)
		}
		d := p.Quarantined(plain, tt.svc)
		if d.Verdict != tt.want || d.Reason != tt.wantReason || d.Rule != tt.wantRule {
			t.Errorf("%s: got %v %q %q, want %v %q %q", tt.why, d.Verdict, d.Reason, d.Rule, tt.want, tt.wantReason, tt.wantRule)
		}
	}
	if d := p.Quarantined(p.Decide(nil, p.Service("pacs"), 443, ProtoTCP, now), p.Service("pacs")); d.Reason != ReasonUnknownIdentity {
		t.Errorf("unknown identity: got %q", d.Reason)
	}
	if got := p.QuarantineAllowed(); !slices.Equal(got, []string{"patch", "edr", "notes"}) {
		t.Errorf("QuarantineAllowed = %v", got)
	}
}

// An audit-mode deny rule lets a flow through as flow.audit; quarantine
// must not inherit that: its denial carries no Audit flag.
func TestQuarantineIgnoresAuditRules(t *testing.T) {
	text := baseTOML + okRule + "[[rule]]\nname = \"rollout\"\naction = \"deny\"\naudit = true\nfrom = [\"alice\"]\nto = [\"pacs\"]\n"
	p, err := Parse("policy.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	plain := p.Decide(p.Identity("alice"), p.Service("pacs"), 443, ProtoTCP, time.Now())
	if !plain.Audit {
		t.Fatalf("setup: the rollout rule should decide with audit: %+v", plain)
	}
	if d := p.Quarantined(plain, p.Service("pacs")); d.Audit || d.Reason != ReasonQuarantined {
		t.Errorf("quarantined: %+v, want a plain quarantined denial", d)
	}
	if p.QuarantineAllows(p.Service("pacs")) || len(p.QuarantineAllowed()) != 0 {
		t.Error("a policy without [quarantine] keeps nothing reachable")
	}
}

func TestQuarantineExplain(t *testing.T) {
	p, err := Parse("policy.toml", []byte(quarantineTOML))
	if err != nil {
		t.Fatal(err)
	}
	alice, now := p.Identity("alice"), time.Now()
	d, text := p.ExplainQuarantined(alice, p.Service("pacs"), 443, ProtoTCP, now)
	if want := "deny: alice is quarantined; only the services of [quarantine] allow (patch, edr, notes) stay reachable, not pacs on 443/tcp"; d.Reason != ReasonQuarantined || text != want {
		t.Errorf("pacs: %v %q\nwant %q", d.Reason, text, want)
	}
	empty, err := Parse("policy.toml", []byte(baseTOML))
	if err != nil {
		t.Fatal(err)
	}
	_, text = empty.ExplainQuarantined(empty.Identity("alice"), empty.Service("pacs"), 0, ProtoICMP, now)
	if want := "deny: alice is quarantined; no service stays reachable ([quarantine] allow is empty), pacs on icmp included"; text != want {
		t.Errorf("without [quarantine]: %q\nwant %q", text, want)
	}
	d, text = p.ExplainQuarantined(alice, p.Service("patch"), 80, ProtoTCP, now)
	if !d.Allowed() || !strings.HasPrefix(text, `allow: rule "alice-all"`) || !strings.Contains(text, "stays reachable") {
		t.Errorf("patch: %v %q", d.Verdict, text)
	}
	// A listed service that a deny rule takes: not "stays reachable".
	d, text = p.ExplainQuarantined(alice, p.Service("edr"), 8443, ProtoTCP, now)
	if want := "(alice is quarantined; edr is in [quarantine] allow, so the rules decide)"; d.Allowed() || !strings.HasPrefix(text, `deny: rule "no-edr-admin"`) || !strings.HasSuffix(text, want) {
		t.Errorf("edr:8443: %v %q, want ...%s", d.Verdict, text, want)
	}
}

func TestQuarantineLoadErrors(t *testing.T) {
	// baseTOML is 22 lines; [quarantine] goes on line 23.
	tests := []struct {
		add  string
		want []string
	}{
		{"[quarantine]\nallow = [\"pacs\", \"pac\"]\n", []string{`policy.toml:24:1: quarantine: unknown service "pac" (did you mean "pacs"?)`}},
		{"[quarantine]\nallow = [\"pacs\", \"pacs\"]\n", []string{`policy.toml:24:1: quarantine: service "pacs" listed twice`}},
		{"[quarantine]\nallow = \"pacs\"\n", []string{`policy.toml:24:1: quarantine: allow must be an array of strings, not a string`}},
		{"[quarantine]\nallows = [\"pacs\"]\n", []string{`policy.toml:24:1: quarantine: unknown key "allows" (known: allow)`}},
	}
	for _, tt := range tests {
		_, err := Parse("policy.toml", []byte(baseTOML+tt.add))
		if got := problems(err); !slices.Equal(got, tt.want) {
			t.Errorf("%q:\n got %q\nwant %q", tt.add, got, tt.want)
		}
	}
	if _, err := Parse("policy.toml", []byte(baseTOML+"[quarantine]\nallow = []\n")); err != nil {
		t.Errorf("an empty allow list is valid: %v", err)
	}
	if _, ok := ParseReason("quarantined"); ok {
		t.Error(`a [[test]] cannot expect reason "quarantined": the policy does not know who is quarantined`)
	}
}

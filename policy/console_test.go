package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const consolePolicy = `[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = "%s"
address = "100.80.0.1"

[[identity]]
name = "admin"
key = "%s"
address = "100.80.1.1"
site = "leeds"
groups = ["it"]

[[identity]]
name = "nurse"
key = "%s"
address = "100.80.1.2"
site = "leeds"

[[identity]]
name = "auditor"
key = "%s"
address = "100.80.1.3"
site = "leeds"
groups = ["auditors"]

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.1:443"]

[[rule]]
name = "staff-everything"
from = ["admin", "nurse"]
to = ["*"]

[[rule]]
name = "it-console"
from = ["group:it", "group:auditors"]
to = ["console"]

[[test]]
from = "admin"
to = "console:80/tcp"
expect = "allow"
`

func parseConsolePolicy(t *testing.T, extra string) (*Policy, error) {
	t.Helper()
	text := consolePolicy
	for i := range 4 {
		text = strings.Replace(text, "%s", testKey(i), 1)
	}
	return Parse("policy.toml", []byte(text+extra))
}

// The console is granted by naming it, never by "*", and answers on 80/tcp
// only.
func TestConsoleService(t *testing.T) {
	p, err := parseConsolePolicy(t, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range p.Warnings() {
		if strings.Contains(w.Msg, "no rule lets it reach any service") {
			t.Errorf("warning %s, but the auditor may reach the console", w)
		}
	}
	for _, r := range p.RunTests() {
		if !r.Passed {
			t.Errorf("test %s failed: %+v", r.To, r.Got)
		}
	}
	con := p.Service(ConsoleService)
	if con == nil || con != p.Console() {
		t.Fatalf("Service(%q) = %v, want the built-in console", ConsoleService, con)
	}
	for _, s := range p.Services() {
		if s == con {
			t.Fatal("the console is listed among Services()")
		}
	}
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	admin, nurse := p.Identity("admin"), p.Identity("nurse")
	tests := []struct {
		id     *Identity
		port   uint16
		proto  Proto
		want   Verdict
		rule   string
		reason Reason
	}{
		{admin, 80, ProtoTCP, Allow, "it-console", ReasonNone},
		{nurse, 80, ProtoTCP, Deny, "", ReasonNoRule}, // "*" does not reach the console
		{admin, 443, ProtoTCP, Deny, "", ReasonNoService},
	}
	for _, tc := range tests {
		d := p.Decide(tc.id, con, tc.port, tc.proto, now)
		if d.Verdict != tc.want || d.Rule != tc.rule || d.Reason != tc.reason {
			t.Errorf("Decide(%s, console, %d/%s) = %+v, want %s %q %s", tc.id.Name, tc.port, tc.proto, d, tc.want, tc.rule, tc.reason)
		}
	}
	if d := p.Decide(nurse, p.Service("ehr"), 443, ProtoTCP, now); !d.Allowed() {
		t.Errorf("nurse to ehr: %+v, want allowed by the rule to *", d)
	}
	if _, why := p.Explain(nurse, con, 80, ProtoTCP, now); !strings.Contains(why, "no rule lets nurse reach console") {
		t.Errorf("explain: %s", why)
	}
}

// A policy that declares its own service named console is refused, with
// the line of that name.
func TestConsoleNameReserved(t *testing.T) {
	_, err := parseConsolePolicy(t, "\n[[service]]\nname = \"console\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.1:8080\"]\n")
	if err == nil {
		t.Fatal("a service named console was accepted")
	}
	line := strings.Count(consolePolicy, "\n") + 3
	want := fmt.Sprintf("policy.toml:%d:", line)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `service name "console" is reserved`) {
		t.Errorf("error %q, want %s... service name \"console\" is reserved", err, want)
	}
}

// console.DOMAIN is the console's DNS name: ServiceByName finds it,
// CanReach says who may resolve it, and no service may take the name.
func TestConsoleDNSName(t *testing.T) {
	p, err := parseConsolePolicy(t, "")
	if err != nil {
		t.Fatal(err)
	}
	name := ConsoleService + "." + p.Overlay().Domain
	if got := p.ServiceByName(name); got != p.Console() {
		t.Fatalf("ServiceByName(%q) = %v, want the console", name, got)
	}
	if !p.CanReach(p.Identity("admin"), p.Console()) {
		t.Error("admin, granted the console, cannot reach it by name")
	}
	if p.CanReach(p.Identity("nurse"), p.Console()) {
		t.Error("nurse, whose rule is to *, reaches the console by name")
	}
	_, err = parseConsolePolicy(t, fmt.Sprintf("\n[[service]]\nname = \"intranet\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.1:8080\"]\ndns = [%q]\n", name))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("DNS name %q is already service %q", name, ConsoleService)) {
		t.Errorf("a service taking the console's name: %v", err)
	}
}

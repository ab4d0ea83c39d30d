package dnsfilter

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/wardgate/wardgate/internal/testnet"
)

// TestSetSettings: new upstreams answer the next question, cached answers
// of the old ones are gone, and query_log follows; settings that did not
// change keep the cache.
func TestSetSettings(t *testing.T) {
	oldUp := testnet.NewDNS(t, testnet.AnswerA("93.184.216.34", 300))
	newUp := testnet.NewDNS(t, testnet.AnswerA("93.184.216.35", 300))
	f, _, audit := newTestFilter(t, Config{Upstreams: []string{oldUp.Addr}, QueryLog: true}, testView())
	if got := answers(ask(t, f, aliceAddr, "example.com", dns.TypeA)); len(got) != 1 || got[0] != "93.184.216.34" {
		t.Fatalf("before: %v", got)
	}

	s, err := CompileSettings(Config{Upstreams: []string{oldUp.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	f.SetSettings(s) // query_log off, same upstreams: the cache stays
	ask(t, f, aliceAddr, "example.com", dns.TypeA)
	if n := oldUp.Queries.Load(); n != 1 {
		t.Errorf("%d queries to the old upstream, want 1 (a cache hit)", n)
	}
	if n := len(audit.events(t)); n != 1 {
		t.Errorf("%d audit events, want 1: query_log was turned off", n)
	}

	s, err = CompileSettings(Config{Upstreams: []string{newUp.Addr}, QueryLog: true})
	if err != nil {
		t.Fatal(err)
	}
	f.SetSettings(s)
	if got := answers(ask(t, f, aliceAddr, "example.com", dns.TypeA)); len(got) != 1 || got[0] != "93.184.216.35" {
		t.Errorf("after: %v, want the new upstream's answer", got)
	}
	if o, n := oldUp.Queries.Load(), newUp.Queries.Load(); o != 1 || n != 1 {
		t.Errorf("queries old %d new %d, want 1 and 1", o, n)
	}
	if n := len(audit.events(t)); n != 2 {
		t.Errorf("%d audit events, want 2: query_log was turned on", n)
	}
}

func TestCompileSettingsRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{AllowInternal: []string{"bad..name"}},
		{Upstreams: []string{""}},
		{EgressTTLMin: 10, EgressTTLMax: 5},
	} {
		if _, err := CompileSettings(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

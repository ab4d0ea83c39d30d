package policy

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// FuzzLoad: no input makes the loader panic or hang, and whatever loads
// answers every question without panicking.
func FuzzLoad(f *testing.F) {
	seeds := []string{examplePath}
	more, _ := filepath.Glob("testdata/*.toml")
	for _, path := range append(seeds, more...) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(baseTOML + okRule))
	f.Add([]byte(semanticsTOML))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang shows where it is stuck.
		watchdog := time.AfterFunc(10*time.Second, func() {
			buf := make([]byte, 1<<20)
			panic("FuzzLoad input hangs:\n" + string(buf[:runtime.Stack(buf, true)]))
		})
		defer watchdog.Stop()
		p, err := Parse("fuzz.toml", data)
		if err != nil {
			if _, ok := err.(*LoadError); !ok {
				t.Fatalf("error is %T, not *LoadError", err)
			}
			return
		}
		at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
		for _, id := range p.Identities() {
			for _, svc := range p.Services() {
				for _, r := range svc.Ports {
					d := p.Decide(id, svc, r.Lo, r.Proto, at)
					p.Explain(id, svc, r.Hi, r.Proto, at)
					// CanReach leaves out rules expired when loaded.
					live := d.Expires.IsZero() || time.Now().Before(d.Expires)
					if d.Allowed() && live && !p.CanReach(id, svc) {
						t.Fatalf("%s -> %s %s allowed but CanReach is false", id.Name, svc.Name, r)
					}
				}
			}
		}
		p.RunTests()
		p.Warnings()
	})
}

func TestBrokenFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"testdata/syntax.toml", []string{`testdata/syntax.toml:2:24: syntax error: strings cannot contain newlines (after key "overlay.prefix")`}},
		{"testdata/refs.toml", []string{
			`testdata/refs.toml:25:1: rule "radiology-reads-pacs": unknown group "radiolgy" (did you mean "radiology"?)`,
			`testdata/refs.toml:25:1: rule "radiology-reads-pacs": unknown site "yrok"`,
			`testdata/refs.toml:25:1: rule "radiology-reads-pacs": unknown identity "dr-kahn-laptop" (did you mean "dr-khan-laptop"?)`,
			`testdata/refs.toml:26:1: rule "radiology-reads-pacs": unknown service "psac"`,
			`testdata/refs.toml:28:1: rule "radiology-reads-pacs": time window "mon-fri 07:00-20:00 Europe/Lundon": unknown time zone "Europe/Lundon"`,
		}},
		{"testdata/inline.toml", []string{
			`testdata/inline.toml:8:1: rule "r": unknown key "bogus" (known: name, action, from, to, ports, when, audit, expires, reason)`,
		}},
	}
	for _, tt := range tests {
		_, err := Load(tt.file)
		got := problems(err)
		if len(got) != len(tt.want) {
			t.Errorf("%s:\n%s", tt.file, err)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s:\n got %s\nwant %s", tt.file, got[i], tt.want[i])
			}
		}
	}
	// Wrong types everywhere: many problems, each positioned, no panic.
	_, err := Load("testdata/types.toml")
	got := problems(err)
	if len(got) < 10 {
		t.Errorf("types.toml: only %d problems:\n%s", len(got), err)
	}
	for _, g := range got {
		if len(g) < len("testdata/types.toml:1:1: ") || g[:len("testdata/types.toml:")] != "testdata/types.toml:" {
			t.Errorf("unpositioned: %s", g)
		}
	}
	t.Logf("types.toml:\n%s", err)
}

package enroll

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// A removed identity's address goes to nobody else: its block becomes a
// retired-address line, and the next add takes the next address.
func TestRemoveRetiresAddress(t *testing.T) {
	path, _ := examplePolicy(t)
	if _, err := Add(path, Request{Name: "desk-1", Site: "leeds"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, _, err := Remove(path, "desk-1"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(mriBlockEnd) + `\n# retired address 100\.80\.0\.3 \(identity desk-1, removed \d{4}-\d\d-\d\d\): wardgate peer add does not hand it out again\n\n# --- Services`).Match(got) {
		t.Fatalf("no retired-address line where the block was:\n%s", got)
	}
	if bytes.Count(got, []byte("\n")) != bytes.Count(before, []byte("\n"))-5 {
		t.Fatal("the six lines of the block were not replaced by one")
	}
	for _, want := range []string{"100.80.0.4", "100.80.0.5"} {
		res, err := Add(path, Request{Name: "desk-" + want, Site: "leeds"})
		if err != nil || res.Identity.Address.String() != want {
			t.Fatalf("add after remove: %v %v, want %s (100.80.0.3 is retired)", res, err, want)
		}
	}
	// Retired lines stay when the blocks around them go.
	for _, name := range []string{"desk-100.80.0.4", "desk-100.80.0.5"} {
		if _, _, err := Remove(path, name); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = os.ReadFile(path)
	if n := len(RetiredAddresses(got)); n != 3 {
		t.Fatalf("%d retired addresses after removing three identities, want 3:\n%s", n, got)
	}
	if _, err := policy.Parse(path, got); err != nil {
		t.Fatal(err)
	}

	// A LAN device's block is cut out: its address is derived from its name.
	os.WriteFile(path, []byte(smallPolicy+"\n[[identity]]\nname = \"scanner\"\nsource = \"192.168.1.5/32\"\nsite = \"a\"\n"), 0o644)
	if _, _, err := Remove(path, "scanner"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != smallPolicy {
		t.Fatalf("removing a LAN identity left:\n%s", got)
	}
}

func TestRemoveBlock(t *testing.T) {
	path, orig := examplePolicy(t)
	id, np, err := Remove(path, "rad-reporting-01")
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "rad-reporting-01" || np.Identity("rad-reporting-01") != nil || np.Identity("york-nurse-station") == nil {
		t.Fatal("wrong identity removed")
	}
	got, _ := os.ReadFile(path)
	block := "[[identity]]\nname = \"rad-reporting-01\"\nkey = \"JjnSMBVolkPN8+70KChPBjqnkyKVmrpajkADd2JIwGE=\"\naddress = \"100.80.2.10\"\nsite = \"york\"\ngroups = [\"radiology\"]\n"
	if !strings.Contains(string(orig), block+"\n[[identity]]") {
		t.Fatal("test is out of date with configs/example/policy.toml")
	}
	if want := strings.Replace(string(orig), block, RetireNote(id, time.Now())+"\n", 1); string(got) != want {
		t.Fatalf("remove replaced more or less than the block:\n%s", diffLines(want, string(got)))
	}
}

func TestRemoveGluedComment(t *testing.T) {
	text := smallPolicy + `
# section comment stays
[[identity]]
name = "x"
key = "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
address = "10.9.0.4"
site = "a"
# x's own note goes with it

# next block's comment stays
[[identity]]
name = "y"
key = "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="
address = "10.9.0.5"
site = "a"
`
	got, err := RemoveIdentity([]byte(text), "x")
	if err != nil {
		t.Fatal(err)
	}
	want := smallPolicy + `
# section comment stays

# next block's comment stays
[[identity]]
name = "y"
key = "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="
address = "10.9.0.5"
site = "a"
`
	if string(got) != want {
		t.Fatalf("got:\n%s", diffLines(want, string(got)))
	}
	got, _ = RemoveIdentity([]byte(text), "y")
	if strings.Contains(string(got), `"y"`) || !strings.HasSuffix(string(got), "# next block's comment stays\n") {
		t.Fatalf("removing the last block:\n%s", got)
	}
	// A retired-address line is never glued to a block.
	retired := "# retired address 10.9.0.9 (identity w, removed 2026-11-30): ...\n"
	got, _ = RemoveIdentity([]byte(text+retired), "y")
	if !strings.HasSuffix(string(got), retired) {
		t.Fatalf("a retired line after the last key went with the block:\n%s", got)
	}
}

func TestRemoveRefusedWhenNamed(t *testing.T) {
	path, orig := examplePolicy(t)
	// ward-12-desktop is named by [[test]]s.
	_, _, err := Remove(path, "ward-12-desktop")
	if err != nil && !strings.Contains(err.Error(), "policy.toml:") {
		t.Fatalf("error without file:line: %v", err)
	}
	var le *policy.LoadError
	if err == nil || !errors.As(err, &le) {
		t.Fatalf("Remove of an identity named by tests: %v, want the policy error", err)
	}
	// Positions point at the file on disk, where the tests name the
	// identity, not at the edited text (six lines shorter).
	for _, p := range le.Problems {
		if l := lineOf(orig, p.Line); l != "[[test]]" && l != `from = "ward-12-desktop"` {
			t.Errorf("problem %v points at %q, not at a [[test]] of the file on disk", p, lineOf(orig, p.Line))
		}
	}
	if !strings.Contains(err.Error(), "ward-12-desktop") {
		t.Fatalf("error does not name the identity: %v", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, orig) {
		t.Fatal("a refused remove changed the file")
	}
	if _, _, err := Remove(path, "nobody"); err == nil {
		t.Fatal("removing an unknown identity succeeded")
	}
}

package enroll

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// FuzzAddRemove: for any valid policy text, inserting an identity block
// and cutting it out again gives the text back (up to blank lines);
// replacing its key changes that key alone; retiring it instead leaves its
// address retired and the rest as it was.
func FuzzAddRemove(f *testing.F) {
	example, err := os.ReadFile("../../configs/example/policy.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example))
	f.Add(smallPolicy)
	f.Add(smallPolicy + "# a comment at the end, no newline")
	f.Add(smallPolicy + "\n[[identity]]\nname = \"x\"\nkey = \"vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4=\"\naddress = \"10.9.0.4\"\nsite = \"a\"\n# glued\n\n\n")
	f.Add(smallPolicy + "\n[[site]]\nname = \"c\"\nkey = \"BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY=\"\naddress = \"10.9.0.9\"\nendpoint = \"\"\"x\"\"\"\n   \n")
	pub, pub2 := newPublic(f), newPublic(f)
	f.Fuzz(func(t *testing.T, text string) {
		p, err := policy.Parse("p.toml", []byte(text))
		if err != nil || len(p.Sites()) == 0 || p.Identity("fuzz-new") != nil {
			return
		}
		retired := RetiredAddresses([]byte(text))
		addr, err := NextAddress(p, retired)
		if err != nil {
			return
		}
		if slices.Contains(retired, addr) {
			t.Fatalf("NextAddress handed out retired %s", addr)
		}
		edited := InsertIdentity([]byte(text), IdentityBlock("fuzz-new", pub, addr, p.Sites()[0].Name, nil))
		np, err := policy.Parse("p.toml", edited)
		if err != nil || np.Identity("fuzz-new") == nil || len(np.Identities()) != len(p.Identities())+1 {
			return // Add refuses these (e.g. a key already in use, a block followed by a string)
		}
		back, err := RemoveIdentity(edited, "fuzz-new")
		if err != nil {
			t.Fatalf("RemoveIdentity of an inserted block: %v", err)
		}
		if nonBlank(string(back)) != nonBlank(text) {
			t.Fatalf("add+remove:\n%q\nwant\n%q", back, text)
		}
		rotated, err := ReplaceKey(edited, "fuzz-new", pub, pub2)
		if err != nil {
			t.Fatalf("ReplaceKey of an inserted block: %v", err)
		}
		if rp, err := policy.Parse("p.toml", rotated); err == nil {
			if id := rp.Identity("fuzz-new"); id == nil || id.Key != pub2 || id.Address != addr || !sameIdentitiesBut(np, rp, "fuzz-new") {
				t.Fatalf("after ReplaceKey: %+v", id)
			}
		} // else pub2 is in use already: Rotate refuses
		id := np.Identity("fuzz-new")
		gone, err := RetireIdentity(edited, "fuzz-new", RetireNote(id, time.Unix(0, 0)))
		if err != nil {
			t.Fatalf("RetireIdentity of an inserted block: %v", err)
		}
		if got := RetiredAddresses(gone); len(got) != len(retired)+1 || !slices.Contains(got, addr) {
			t.Fatalf("after retiring %s: retired %v", addr, got)
		}
		if rp, err := policy.Parse("p.toml", gone); err != nil || rp.Identity("fuzz-new") != nil || len(rp.Identities()) != len(p.Identities()) {
			t.Fatalf("retired text: %v", err)
		}
	})
}

// nonBlank is text without its blank lines and with a final newline.
func nonBlank(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

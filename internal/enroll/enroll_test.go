package enroll

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wardgate/wardgate/policy"
)

// examplePolicy copies configs/example/policy.toml into a temp dir.
func examplePolicy(t *testing.T) (path string, orig []byte) {
	t.Helper()
	orig, err := os.ReadFile("../../configs/example/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(path, orig, 0o640); err != nil {
		t.Fatal(err)
	}
	return path, orig
}

func mustParse(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const smallPolicy = `[overlay]
prefix = "10.9.0.0/24"
service_prefix = "10.10.0.0/24"
domain = "t.internal"

[[site]]
name = "a"
key = "LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU="
address = "10.9.0.1"

[[site]]
name = "b"
key = "nQ4UZ3gbeDi9cZc+Zlc55KWDbmMHBr4iI4gyQMD0YkI="
address = "10.9.0.3"
`

func TestNextAddress(t *testing.T) {
	idLine := func(name, key, addr string) string {
		return "\n[[identity]]\nname = \"" + name + "\"\nkey = \"" + key + "\"\naddress = \"" + addr + "\"\nsite = \"a\"\n"
	}
	k1 := "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
	k2 := "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"above the highest site, not in the gap below it", "", "10.9.0.4"},
		{"skips identities", idLine("x", k1, "10.9.0.4") + idLine("y", k2, "10.9.0.5"), "10.9.0.6"},
		{"fills a hole left by a removal", idLine("x", k1, "10.9.0.5"), "10.9.0.4"},
		{"identities below the sites do not matter", idLine("x", k1, "10.9.0.2"), "10.9.0.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NextAddress(mustParse(t, smallPolicy+tc.extra))
			if err != nil || got.String() != tc.want {
				t.Fatalf("NextAddress = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
	t.Run("full", func(t *testing.T) {
		text := strings.Replace(smallPolicy, "10.9.0.3", "10.9.0.253", 1)
		text += idLine("x", k1, "10.9.0.254")
		_, err := NextAddress(mustParse(t, text))
		if err == nil {
			t.Fatal("NextAddress found an address in a full prefix (10.9.0.255 is the broadcast)")
		}
	})
	t.Run("example", func(t *testing.T) {
		path, _ := examplePolicy(t)
		p, err := policy.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := NextAddress(p)
		if got != netip.MustParseAddr("100.80.0.3") {
			t.Fatalf("NextAddress(example) = %v, want 100.80.0.3 (above the sites .1 and .2)", got)
		}
	})
}

func TestAddKeepsTextAndAppends(t *testing.T) {
	path, orig := examplePolicy(t)
	res, err := Add(path, Request{Name: "desk-1", Site: "leeds", Groups: []string{"clinical-desktop", "new-group"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.HasPrefix(got, orig) {
		t.Fatal("the original text is not kept byte for byte at the start of the file")
	}
	added := string(got[len(orig):])
	pub, _ := PublicKey(res.PrivateKey)
	want := "\n[[identity]]\nname = \"desk-1\"\nkey = \"" + pub.String() + "\"\naddress = \"100.80.0.3\"\nsite = \"leeds\"\ngroups = [\"clinical-desktop\", \"new-group\"]\n"
	if added != want {
		t.Fatalf("appended:\n%q\nwant\n%q", added, want)
	}
	if res.Identity.Address.String() != "100.80.0.3" || res.Identity.Key != pub {
		t.Fatalf("identity %+v", res.Identity)
	}
	if len(res.NewGroups) != 1 || res.NewGroups[0] != "new-group" {
		t.Fatalf("NewGroups = %v", res.NewGroups)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want the original 0640", st.Mode().Perm())
	}
	// The next one gets the next address; a client-supplied key is used.
	_, pub2, _ := GenerateKey()
	res2, err := Add(path, Request{Name: "desk-2", Site: "york", Key: pub2})
	if err != nil {
		t.Fatal(err)
	}
	if !res2.PrivateKey.IsZero() || res2.Identity.Key != pub2 || res2.Identity.Address.String() != "100.80.0.4" {
		t.Fatalf("second add: %+v priv zero %v", res2.Identity, res2.PrivateKey.IsZero())
	}
	// No stray temporary files.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only policy.toml", len(ents))
	}
}

func TestAddRefusesAndWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"existing name", Request{Name: "dr-khan-laptop", Site: "leeds"}, "already exists"},
		{"unknown site", Request{Name: "x", Site: "hull"}, "unknown site"},
		{"bad name", Request{Name: "bad name!", Site: "leeds"}, "would be invalid"},
		{"bad group", Request{Name: "x", Site: "leeds", Groups: []string{"a b"}}, "would be invalid"},
		{"key in use", Request{Name: "x", Site: "leeds", Key: mustKey(t, "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4=")}, "would be invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, orig := examplePolicy(t)
			_, err := Add(path, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add: %v, want an error with %q", err, tc.want)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, orig) {
				t.Fatal("a refused add changed the file")
			}
			if strings.Contains(tc.want, "invalid") {
				var le *policy.LoadError
				if !errors.As(err, &le) {
					t.Fatalf("error %v does not carry the policy's LoadError", err)
				}
			}
		})
	}
}

func mustKey(t *testing.T, s string) policy.Key {
	k, err := policy.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAddThenRemoveRestoresBytes(t *testing.T) {
	for _, tail := range []string{"", "\n", "\n\n# trailing comment\n", "# no newline at the end"} {
		path, _ := examplePolicy(t)
		base, _ := os.ReadFile(path)
		base = append(base, tail...)
		os.WriteFile(path, base, 0o644)
		if _, err := Add(path, Request{Name: "desk-1", Site: "leeds", Groups: []string{"it"}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Remove(path, "desk-1"); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		// The add may have added a final newline and one blank line; the
		// removal takes them away again, along with blank lines that
		// ended the file (the one thing not restored).
		want := strings.TrimRight(string(base), "\n") + "\n"
		if string(got) != want {
			t.Fatalf("tail %q: after add+remove the file differs:\n%q\nwant\n%q", tail, got[len(got)-80:], want[len(want)-80:])
		}
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
	block := "[[identity]]\nname = \"rad-reporting-01\"\nkey = \"JjnSMBVolkPN8+70KChPBjqnkyKVmrpajkADd2JIwGE=\"\naddress = \"100.80.2.10\"\nsite = \"york\"\ngroups = [\"radiology\"]\n\n"
	if !strings.Contains(string(orig), block) {
		t.Fatal("test is out of date with configs/example/policy.toml")
	}
	if want := strings.Replace(string(orig), block, "", 1); string(got) != want {
		t.Fatalf("remove cut more or less than the block:\n%s", diffLines(want, string(got)))
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

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path, []byte("old"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink("f", link)
	if err := WriteFileAtomic(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	lst, _ := os.Lstat(link)
	if string(got) != "new" || st.Mode().Perm() != 0o600 || lst.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("content %q mode %v link kept %v", got, st.Mode().Perm(), lst.Mode()&os.ModeSymlink != 0)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("temporary file left behind: %v", ents)
	}
	// A directory that cannot be written to: error, old content intact.
	if os.Geteuid() != 0 {
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if err := WriteFileAtomic(path, []byte("newer")); err == nil {
			t.Fatal("write into a read-only directory succeeded")
		}
		got, _ := os.ReadFile(path)
		if string(got) != "new" {
			t.Fatalf("failed write changed the file: %q", got)
		}
	}
}

func TestChangedUnderneath(t *testing.T) {
	path, orig := examplePolicy(t)
	err := writeIfUnchanged(path, append(bytes.Clone(orig), '#'), []byte("x"))
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, orig) {
		t.Fatal("file written despite the change")
	}
}

func TestClientConfig(t *testing.T) {
	text := smallPolicy + `
[[identity]]
name = "desk"
key = "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
address = "10.9.0.4"
site = "a"
groups = ["g"]

[[service]]
name = "web"
site = "a"
endpoints = ["192.168.5.10:443", "192.168.5.0/24:8000-8010", "127.0.0.1:80"]

[[service]]
name = "db"
site = "b"
endpoints = ["192.168.9.10:5432"]

[[service]]
name = "other"
site = "a"
endpoints = ["172.16.0.1:443"]

[[rule]]
name = "g-web"
from = ["group:g"]
to = ["web", "db"]
`
	p := mustParse(t, text)
	priv, _, _ := GenerateKey()
	c, err := ClientFor(p, "desk", priv)
	if err != nil {
		t.Fatal(err)
	}
	want := "# wardgate client config for desk (site a)\n[Interface]\nPrivateKey = " + priv.String() + `
Address = 10.9.0.4/32
DNS = 10.9.0.1

[Peer]
# the a gateway
PublicKey = LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU=
# Endpoint = fill in HOST:PORT of the gateway (its [[site]] has no endpoint)
AllowedIPs = 10.9.0.0/24, 10.10.0.0/24, 192.168.5.0/24, 192.168.9.10/32
PersistentKeepalive = 25
`
	if got := c.Render(); got != want {
		t.Fatalf("Render:\n%s\nwant\n%s", got, want)
	}
	c.PrivateKey, c.Endpoint = policy.Key{}, "gw.example:51820"
	got := c.Render()
	if strings.Contains(got, "\nPrivateKey") || !strings.Contains(got, "# PrivateKey = fill in") || !strings.Contains(got, "\nEndpoint = gw.example:51820\n") {
		t.Fatalf("Render without a private key:\n%s", got)
	}
}

// diffLines shows the first differing line of two texts.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n want " + strings.TrimSpace(wl) + "\n got  " + strings.TrimSpace(gl)
		}
	}
	return "(same)"
}

func lineOf(text []byte, n int) string {
	lines := strings.Split(string(text), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}

// FuzzAddRemove: for any valid policy text, appending an identity block
// and cutting it out again gives the text back (less blank lines at its
// end), and the appended text parses to exactly one more identity.
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
	_, pub, _ := GenerateKey()
	f.Fuzz(func(t *testing.T, text string) {
		p, err := policy.Parse("p.toml", []byte(text))
		if err != nil || len(p.Sites()) == 0 || p.Identity("fuzz-new") != nil {
			return
		}
		addr, err := NextAddress(p)
		if err != nil {
			return
		}
		edited := AppendIdentity([]byte(text), IdentityBlock("fuzz-new", pub, addr, p.Sites()[0].Name, nil))
		np, err := policy.Parse("p.toml", edited)
		if err != nil || np.Identity("fuzz-new") == nil || len(np.Identities()) != len(p.Identities())+1 {
			return // Add refuses these (e.g. a key already in use, a file ending in a string)
		}
		back, err := RemoveIdentity(edited, "fuzz-new")
		if err != nil {
			t.Fatalf("RemoveIdentity of an appended block: %v", err)
		}
		lines := strings.SplitAfter(text, "\n")
		for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
			lines = lines[:len(lines)-1]
		}
		want := strings.Join(lines, "")
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if string(back) != want {
			t.Fatalf("add+remove:\n%q\nwant\n%q", back, want)
		}
	})
}

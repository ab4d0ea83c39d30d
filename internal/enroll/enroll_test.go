package enroll

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/internal/wgkey"
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
			got, err := NextAddress(mustParse(t, smallPolicy+tc.extra), nil)
			if err != nil || got.String() != tc.want {
				t.Fatalf("NextAddress = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
	t.Run("full", func(t *testing.T) {
		text := strings.Replace(smallPolicy, "10.9.0.3", "10.9.0.253", 1)
		text += idLine("x", k1, "10.9.0.254")
		_, err := NextAddress(mustParse(t, text), nil)
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
		got, _ := NextAddress(p, nil)
		if got != netip.MustParseAddr("100.80.0.3") {
			t.Fatalf("NextAddress(example) = %v, want 100.80.0.3 (above the sites .1 and .2)", got)
		}
	})
	t.Run("retired", func(t *testing.T) {
		text := smallPolicy + "\n# retired address 10.9.0.4 (identity x, removed 2026-11-30): wardgate peer add does not hand it out again\n" +
			"#retired address 10.9.0.6: by hand\n# retired address nonsense\n# the retired address 10.9.0.7 is only prose\n" + idLine("y", k2, "10.9.0.5")
		retired := RetiredAddresses([]byte(text))
		if len(retired) != 2 || retired[0].String() != "10.9.0.4" || retired[1].String() != "10.9.0.6" {
			t.Fatalf("RetiredAddresses = %v, want [10.9.0.4 10.9.0.6]", retired)
		}
		got, err := NextAddress(mustParse(t, text), retired)
		if err != nil || got.String() != "10.9.0.7" {
			t.Fatalf("NextAddress = %v, %v; want 10.9.0.7 (.4 and .6 retired, .5 used)", got, err)
		}
	})
}

// mriBlockEnd is the end of the last [[identity]] of the example policy,
// after which peer add inserts.
const mriBlockEnd = "source = \"192.168.20.13/32\"\nsite = \"york\"\ngroups = [\"medical-device\"]\n"

func TestAddInsertsAfterLastIdentity(t *testing.T) {
	path, orig := examplePolicy(t)
	if strings.Count(string(orig), mriBlockEnd) != 1 {
		t.Fatal("test is out of date with configs/example/policy.toml")
	}
	res, err := Add(path, Request{Name: "desk-1", Site: "leeds", Groups: []string{"clinical-desktop", "new-group"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	pub := res.PrivateKey.Public()
	block := "\n[[identity]]\nname = \"desk-1\"\nkey = \"" + pub.String() + "\"\naddress = \"100.80.0.3\"\nsite = \"leeds\"\ngroups = [\"clinical-desktop\", \"new-group\"]\n"
	if want := strings.Replace(string(orig), mriBlockEnd, mriBlockEnd+block, 1); string(got) != want {
		t.Fatalf("not inserted after the last identity:\n%s", diffLines(want, string(got)))
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
	// The next one gets the next address and goes after desk-1; a
	// client-supplied key is used.
	pub2 := newPublic(t)
	res2, err := Add(path, Request{Name: "desk-2", Site: "york", Key: pub2})
	if err != nil {
		t.Fatal(err)
	}
	if !res2.PrivateKey.IsZero() || res2.Identity.Key != pub2 || res2.Identity.Address.String() != "100.80.0.4" {
		t.Fatalf("second add: %+v priv zero %v", res2.Identity, res2.PrivateKey.IsZero())
	}
	got, _ = os.ReadFile(path)
	if i, j, k := strings.Index(string(got), `"desk-1"`), strings.Index(string(got), `"desk-2"`), strings.Index(string(got), "[[service]]"); i < 0 || j < i || k < j {
		t.Fatalf("desk-1 at %d, desk-2 at %d, first service at %d: identities not together", i, j, k)
	}
	// No stray temporary files.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only policy.toml", len(ents))
	}
}

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

func TestInsertIdentity(t *testing.T) {
	block := "[[identity]]\nname = \"new\"\n"
	idY := "[[identity]]\nname = \"y\"\nkey = \"k\"\n"
	idZ := "[[identity]]\nname = \"z\"\nkey = \"k\"\n"
	for _, tc := range []struct{ name, text, want string }{
		{"no identity: at the end", "[overlay]\nx = 1\n", "[overlay]\nx = 1\n\n" + block},
		{"last identity ends the file", "[overlay]\n\n" + idY, "[overlay]\n\n" + idY + "\n" + block},
		{"before what follows, one blank line each side", idY + "\n# services\n[[service]]\n", idY + "\n" + block + "\n# services\n[[service]]\n"},
		{"a following header with no blank line gets one", idY + "[[service]]\n", idY + "\n" + block + "\n[[service]]\n"},
		{"after the comment glued to the last key", idY + "# y's note\n\n[[rule]]\n", idY + "# y's note\n\n" + block + "\n[[rule]]\n"},
		{"after the last of several, before a retired line", idY + "\n" + idZ + "# retired address 10.0.0.9: x\n[[test]]\n",
			idY + "\n" + idZ + "\n" + block + "\n# retired address 10.0.0.9: x\n[[test]]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(InsertIdentity([]byte(tc.text), block)); got != tc.want {
				t.Fatalf("got:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	path, orig := examplePolicy(t)
	oldKey := "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
	res, err := Rotate(path, "dr-khan-laptop", wgkey.Public{})
	if err != nil {
		t.Fatal(err)
	}
	pub := res.PrivateKey.Public()
	got, _ := os.ReadFile(path)
	if want := strings.Replace(string(orig), `key = "`+oldKey+`"`, `key = "`+pub.String()+`"`, 1); string(got) != want {
		t.Fatalf("more than the key line changed:\n%s", diffLines(want, string(got)))
	}
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity("dr-khan-laptop")
	if id.Key != pub || res.Identity.Key != pub || res.Old.Key.String() != oldKey || id.Address.String() != "100.80.1.10" || id.Site != "leeds" {
		t.Fatalf("after rotate: %+v (old %+v)", id, res.Old)
	}
	if strings.Contains(string(got), oldKey) {
		t.Fatal("the old key is still in the policy")
	}
	// A given public key: no private key comes back.
	pub2 := newPublic(t)
	res, err = Rotate(path, "dr-khan-laptop", pub2)
	if err != nil || !res.PrivateKey.IsZero() || res.Identity.Key != pub2 {
		t.Fatalf("Rotate with a key: %+v %v", res, err)
	}

	for _, tc := range []struct {
		name, who string
		key       wgkey.Public
		want      string
	}{
		{"unknown", "nobody", wgkey.Public{}, "no identity"},
		{"LAN device", "mri-3", wgkey.Public{}, "LAN device"},
		{"same key", "dr-khan-laptop", pub2, "already has"},
		{"another identity's key", "dr-khan-laptop", mustKey(t, "BMxOAT+qhgTAzGx+5q8EI4lnlJKlf8yWXyX8wOcM1TY="), "invalid"},
		{"a site's key", "dr-khan-laptop", mustKey(t, "LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU="), "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			if _, err := Rotate(path, tc.who, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Rotate: %v, want an error with %q", err, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Fatal("a refused rotate changed the file")
			}
		})
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

func mustKey(t *testing.T, s string) wgkey.Public {
	k, err := wgkey.ParsePublic(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newPublic is the public key of a new key pair.
func newPublic(t testing.TB) wgkey.Public {
	k, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
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
	err := WriteIfUnchanged(path, append(bytes.Clone(orig), '#'), []byte("x"))
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
	priv, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClientFor(p, "desk", priv)
	if err != nil {
		t.Fatal(err)
	}
	want := "# wardgate client config for desk (site a)\n[Interface]\nPrivateKey = " + priv.Base64() + `
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
	c.PrivateKey, c.Endpoint = wgkey.Private{}, "gw.example:51820"
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

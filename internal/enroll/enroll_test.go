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
	// A directory that does not exist: the error names the file asked
	// for and its directory, not the temporary file.
	missing := filepath.Join(dir, "nodir", "policy.toml")
	if err := WriteFileAtomic(missing, []byte("x")); err == nil || err.Error() != "writing "+missing+": cannot create a file in "+filepath.Dir(missing)+": no such file or directory" {
		t.Errorf("write into a missing directory: %v", err)
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

package gateway

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wardgate/wardgate/internal/wgclient"
)

var screenshotDir = flag.String("screenshots", "", "TestConsoleBrowser writes a PNG of each console page (1280x800) to this directory")

// browserPath finds Debian's chromium-headless-shell (scripts/install-deps.sh
// installs it), or another Chromium.
func browserPath() string {
	for _, name := range []string{"chromium-headless-shell", "headless_shell", "chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, p := range []string{"/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/headless_shell"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// overlayProxy is a loopback port whose connections are carried to the
// console through c's WireGuard tunnel: the browser then talks to the
// console as c's identity, the way a client's own browser would.
func overlayProxy(t *testing.T, c *wgclient.Client) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				up, err := c.DialContext(ctx, "tcp4", consoleAddr)
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					io.Copy(up, conn)
					up.(interface{ CloseWrite() error }).CloseWrite()
				}()
				io.Copy(conn, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestConsoleBrowser drives a real browser through every page of the
// console of a running gateway in audit mode, over bob's WireGuard tunnel:
// the audit banner, the map cell for alice and ehr and its explain answer,
// the explain form, a flow and a would-be denial appearing on the live page
// within a second, the grants; and checks that alice, without a console
// rule, is refused. With -screenshots DIR it saves each page.
func TestConsoleBrowser(t *testing.T) {
	browser := browserPath()
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium-headless-shell (scripts/install-deps.sh installs it)")
		}
		t.Skip("no chromium-headless-shell; scripts/install-deps.sh installs it")
	}
	r := newConsoleRig(t, "enforce = \"audit\"\n")
	base := overlayProxy(t, r.bob)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 800))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// The first action starts the browser, and must not have a deadline.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	within := func(d time.Duration, what, cond string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(sctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(d))); err != nil {
			t.Fatalf("%s within %v: %v", what, d, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		if *screenshotDir == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(*screenshotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	step("overview", chromedp.Navigate(base+"/"))
	if got := text("#audit-banner"); !strings.Contains(got, "AUDIT MODE") {
		t.Errorf("audit banner %q", got)
	}
	if got := text("header .viewer"); got != "you are bob" {
		t.Errorf("viewer %q, want bob", got)
	}
	shot("overview")

	aliceEHR := `td.cell[title^="alice → ehr"]`
	step("map", chromedp.Navigate(base+"/map"))
	within(time.Second, "alice's ehr cell", `(() => { const c = document.querySelector('`+aliceEHR+`');
		return c !== null && c.classList.contains('allow') && c.title.includes('by rule clinical-ehr'); })()`)
	within(time.Second, "mri-3's ehr cell, in roll-out", `document.querySelector('td.cell[title^="mri-3 → ehr"]').classList.contains('audit')`)
	shot("map")
	sctx, cancelClick := context.WithTimeout(ctx, 20*time.Second)
	_, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS(aliceEHR+" a")))
	cancelClick()
	if err != nil {
		t.Fatalf("clicking alice's ehr cell: %v", err)
	}
	if got := text("#sentence"); !strings.Contains(got, `rule "clinical-ehr" lets group:clinical reach ehr`) {
		t.Errorf("explain after a click on the cell: %q", got)
	}

	step("explain form", chromedp.Navigate(base+"/explain"),
		chromedp.SetValue(chromedp.CSS(`input[name="from"]`), "alice"),
		chromedp.SetValue(chromedp.CSS(`input[name="to"]`), "payroll"))
	sctx, cancelSubmit := context.WithTimeout(ctx, 20*time.Second)
	_, err = chromedp.RunResponse(sctx, chromedp.Submit(chromedp.CSS("#explain-form")))
	cancelSubmit()
	if err != nil {
		t.Fatalf("submitting the explain form: %v", err)
	}
	if got := text("#sentence"); !strings.Contains(got, "no rule lets alice (groups clinical) reach payroll on 9/tcp") {
		t.Errorf("explain form's answer: %q", got)
	}
	shot("explain")

	step("live flows", chromedp.Navigate(base+"/flows"))
	within(5*time.Second, "the event stream", `document.getElementById('live-state').textContent === 'live'`)
	c, err := dialVIP(r.alice, "100.81.0.10", r.be.echo.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	within(time.Second, "alice's flow on the live page", `[...document.querySelectorAll('#flows tbody tr')].some(tr => tr.cells[1].textContent === 'alice' && tr.cells[2].textContent === 'ehr')`)
	if p, err := dialVIP(r.alice, "100.81.0.11", 9); err == nil {
		p.Close()
	}
	within(time.Second, "alice's would-be denial on the live page", `[...document.querySelectorAll('#decisions tbody tr.audit')].some(tr => tr.cells[2].textContent === 'alice' && tr.cells[3].textContent === 'payroll')`)
	shot("flows")

	step("grants", chromedp.Navigate(base+"/grants"))
	if got := text("#grants"); !strings.Contains(got, "cover-ward-7") || !strings.Contains(got, "on-call cover") {
		t.Errorf("grants: %q", got)
	}
	shot("grants")

	// alice has no console rule: her tunnel carries nothing to it, and the
	// attempt is audited as a denial even though the gateway is auditing.
	sctx, cancelRefused := context.WithTimeout(ctx, 20*time.Second)
	err = chromedp.Do(sctx, chromedp.Navigate(overlayProxy(t, r.alice)+"/"))
	cancelRefused()
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("alice's browser loading the console: %v, want a refused page", err)
	}
	r.tg.audit.waitEvent(t, map[string]any{"event": "flow.deny", "identity": "alice", "service": "console", "reason": "no-rule"})
}

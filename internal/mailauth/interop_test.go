package mailauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// needTool returns the path of a Debian tool, skipping the test without it
// (and failing under POSTHORN_REQUIRE_INTEROP=1).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("POSTHORN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s not installed (apt-get install python3-dkim) and POSTHORN_REQUIRE_INTEROP=1", name)
		}
		t.Skipf("%s not installed (apt-get install python3-dkim)", name)
	}
	return p
}

// localDNSVerify runs Debian's dkimverify program with its DNS TXT lookup
// answered from zone: dkimpy takes the lookup function as a default argument
// of DKIM.verify, which the wrapper replaces before calling dkimverify's
// main, so no query leaves the process.
const localDNSVerify = `
import json, sys, dkim
from dkim import dkimverify
zone = json.loads(sys.argv[1])
def txt(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    v = zone.get(n.rstrip('.').lower())
    return v.encode() if v is not None else None
dkim.DKIM.verify.__defaults__ = (0, txt)
sys.argv = ['dkimverify', '--index', sys.argv[2]]
dkimverify.main()
`

// TestDkimpyVerifiesPosthorn signs with posthorn (both keys) and has Debian's
// python3-dkim dkimverify check each signature.
func TestDkimpyVerifiesPosthorn(t *testing.T) {
	py := interpreterOf(t, needTool(t, "dkimverify"))
	w := newWorld(t)
	recs, _ := w.signer.Records()
	zone := map[string]string{}
	for _, r := range recs {
		zone[r.Name] = r.Value
	}
	zj, _ := json.Marshal(zone)
	msgs := map[string]string{
		"plain": plainMsg,
		"folded and spaced": "From: Alice <alice@sender.example>\r\nTo: bob@rcpt.example,\r\n  carol@rcpt.example\r\n" +
			"Subject:  a   folded\r\n\tsubject \r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nline  with  spaces \t\r\n\r\n\r\n",
	}
	for name, m := range msgs {
		signed := w.sign(t, m)
		for i := range w.signer.Keys {
			cmd := exec.Command(py, "-c", localDNSVerify, string(zj), strconv.Itoa(i))
			cmd.Stdin = strings.NewReader(signed)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "signature ok") {
				t.Errorf("%s: dkimverify of signature %d (%s): %v\n%s", name, i, w.signer.Keys[i].Algorithm, err, out)
			}
		}
		// And a change is caught, so the check above means something.
		cmd := exec.Command(py, "-c", localDNSVerify, string(zj), "0")
		cmd.Stdin = strings.NewReader(strings.Replace(signed, "Subject:", "Subject: Re:", 1))
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%s: dkimverify accepted a changed subject: %s", name, out)
		}
	}
}

// TestPosthornVerifiesDkimsign signs with Debian's dkimsign (RSA and
// Ed25519, each canonicalization) and verifies in posthorn.
func TestPosthornVerifiesDkimsign(t *testing.T) {
	dkimsign := needTool(t, "dkimsign")
	w := newWorld(t)
	dir := t.TempDir()
	// dkimsign reads an RSA key as PEM and an Ed25519 key as a base64 seed.
	var rsaPath, edPath string
	for _, k := range w.signer.Keys {
		data, err := os.ReadFile(k.Path)
		if err != nil {
			t.Fatal(err)
		}
		switch k.Algorithm {
		case "rsa":
			rsaPath = filepath.Join(dir, "rsa.pem")
			os.WriteFile(rsaPath, data, 0o600)
		case "ed25519":
			edPath = filepath.Join(dir, "ed.key")
			seed := k.Key.(interface{ Seed() []byte }).Seed()
			os.WriteFile(edPath, []byte(b64(seed)+"\n"), 0o600)
		}
	}
	sel := func(alg string) string {
		for _, k := range w.signer.Keys {
			if k.Algorithm == alg {
				return k.Selector
			}
		}
		return ""
	}
	for _, tc := range []struct{ alg, key, sel, canon string }{
		{"rsa-sha256", rsaPath, sel("rsa"), "simple"},
		{"rsa-sha256", rsaPath, sel("rsa"), "relaxed"},
		{"ed25519-sha256", edPath, sel("ed25519"), "relaxed"},
		{"ed25519-sha256", edPath, sel("ed25519"), "simple"},
	} {
		cmd := exec.Command(dkimsign, "--signalg", tc.alg, "--hcanon", tc.canon, "--bcanon", tc.canon, tc.sel, "sender.example", tc.key)
		cmd.Stdin = strings.NewReader(plainMsg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dkimsign %s: %v %s", tc.alg, err, stderr.String())
		}
		signed := string(out)
		if !strings.HasPrefix(signed, "DKIM-Signature:") {
			// Older dkimsign prints only the signature field.
			signed += plainMsg
		}
		sigs, err := VerifyDKIM(context.Background(), w.dns, strings.NewReader(signed), 0)
		if err != nil || len(sigs) != 1 || sigs[0].Result != DKIMPass || sigs[0].Algorithm != tc.alg {
			t.Errorf("dkimsign %s %s: %v %v", tc.alg, tc.canon, sigs, err)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// interpreterOf returns the Python of a script's #! line: the one that has
// python3-dkim, not whichever python3 comes first in $PATH.
func interpreterOf(t *testing.T, script string) string {
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(f) == 0 {
		t.Fatalf("%s has no #! line", script)
	}
	if filepath.Base(f[0]) == "env" && len(f) > 1 {
		return f[1]
	}
	return f[0]
}

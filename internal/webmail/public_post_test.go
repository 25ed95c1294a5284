package webmail

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// The login form, which anyone may post, takes no multipart body and no
// more than 64 KiB: a stranger cannot make the server parse or spool a
// message's worth of data (a review found 51 MB taken per request).
func TestPublicPostsAreSmall(t *testing.T) {
	e := newEnv(t, envOptions{}, "pp")
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("file", "big.bin")
	fw.Write(bytes.Repeat([]byte("x"), 1<<20))
	mw.Close()
	resp, err := http.Post(e.http.URL+"/login", mw.FormDataContentType(), &b)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("multipart login: %d, want 400", resp.StatusCode)
	}
	resp, err = http.Post(e.http.URL+"/login", "application/x-www-form-urlencoded", strings.NewReader("user=pp&password="+strings.Repeat("x", 200<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusOK {
		t.Errorf("a 200 KiB login form: %d, want it refused", resp.StatusCode)
	}
}

// Where a form sends the browser back to: paths of this site only.
func TestLocalPath(t *testing.T) {
	for back, want := range map[string]bool{
		"/mail/3": true, "/": true, "/mail/3?page=2": true,
		"": false, "//evil.example": false, "/\\evil.example": false, "/\t/evil.example": false,
		"/\n/evil.example": false, "https://evil.example/": false, "mail/3": false, "/a\\b": false,
	} {
		if got := localPath(back); got != want {
			t.Errorf("localPath(%q) = %v, want %v", back, got, want)
		}
	}
}

// A cid: image is one path segment of the message's own cid route,
// escaped: it cannot climb to another page.
func TestCidStaysInItsSegment(t *testing.T) {
	out := htmlPolicy.Sanitize(`<img src="cid:../../../5"><img src="cid:a/b"><img src="cid:..">`)
	for _, bad := range []string{`src="cid/../`, `src="cid/a/b"`, `src="cid/.."`} {
		if strings.Contains(out, bad) {
			t.Errorf("sanitised %q contains %q", out, bad)
		}
	}
	if !strings.Contains(out, `src="cid/..%2F..%2F..%2F5"`) {
		t.Errorf("sanitised: %q", out)
	}
}
